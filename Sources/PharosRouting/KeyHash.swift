/// The stable 64-bit hash of a key: FNV-1a over its UTF-8 bytes, then the SplitMix64
/// finaliser so that every bit depends on every byte. Segment key indexes store it and the
/// coordinator routes keys to buckets with it, so it must never change within a format or
/// protocol version.
public enum KeyHash {
    /// The hash of `key`.
    public static func of(_ key: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }
}

extension KeyHash {
    /// The bucket (`0..<buckets`) that `key` routes to: the hash modulo the bucket count.
    /// Every router (the coordinator, shards filtering by bucket) computes it here.
    /// A count below 1 is taken as 1 (every key in bucket 0): cluster maps are validated to
    /// have at least one bucket, and routing must never trap.
    public static func bucket(of key: String, buckets: Int) -> Int {
        Int(of(key) % UInt64(Swift.max(1, buckets)))
    }
}
