/// Hard limits of shard storage; inputs beyond them are refused with `StorageError.invalidInput`.
public enum StorageLimits {
    /// Longest key, in UTF-8 bytes.
    public static let maximumKeyBytes = 1024
    /// Largest metadata value per entry, in bytes.
    public static let maximumMetadataBytes = 64 * 1024
    /// Most rows in one upsert or delete call (one log record).
    public static let maximumBatchRows = 100_000
    /// Largest log record payload before compression (keeps records within one LZ4 block).
    public static let maximumRecordBytes = 256 << 20
    /// Most segments a shard holds at once (sealing waits for compaction beyond this).
    public static let maximumSegments = 512
    /// Entries per LZ4 block of keys or metadata in a segment file.
    public static let blobBlockEntries = 1024
    /// Entries per checksummed block of a segment's key index.
    public static let keyIndexBlockEntries = 4096
}
