import Logging

/// The request being served, as a task-local value, so log lines written while serving it
/// carry its id (`request` in their metadata) without every call passing it along.
///
/// The wire server sets it around a service's `respond`; it reaches the code that runs there
/// and the tasks started from there. Work continued in event-loop callbacks (a search's
/// fan-out answers) runs outside it: such code reads the id first and binds it again there
/// (`$requestID.withValue`).
public enum RequestContext {
    /// The id of the request being served here, if any.
    @TaskLocal public static var requestID: UInt64?

    /// Adds `request: ID` to log lines written inside a request.
    public static let metadataProvider = Logger.MetadataProvider {
        requestID.map { ["request": "\($0)"] } ?? [:]
    }
}
