import Dispatch
import NIOConcurrencyHelpers
import PharosObservability
import Prometheus

/// What a wire server reports on the admin port: requests by message type and outcome, their
/// latency, what is in flight, and the refusals operators alert on.
///
/// Series per (type, outcome) are made on first use and kept, so a request costs one lock and
/// a dictionary lookup, not a registry search.
public final class WireMetrics: Sendable {
    /// The registry the series live in.
    public let registry: MetricsRegistry
    private let counters = NIOLockedValueBox<[String: Prometheus.Counter]>([:])
    private let latencies = NIOLockedValueBox<[String: DurationHistogram]>([:])
    let overloaded: Prometheus.Counter
    let inFlight: Prometheus.Gauge
    let bytesInFlight: Prometheus.Gauge
    let connections: Prometheus.Gauge

    /// Series in `registry`.
    public init(registry: MetricsRegistry) {
        self.registry = registry
        overloaded = registry.counter("pharos_overloaded_total", help: "Requests answered OVERLOADED because too many requests or bytes were in flight.")
        inFlight = registry.gauge("pharos_requests_in_flight", help: "Requests being served now.")
        bytesInFlight = registry.gauge("pharos_request_bytes_in_flight", help: "Request, partial-frame and unsent reply bytes held now.")
        connections = registry.gauge("pharos_connections_open", help: "Open client connections.")
    }

    /// Counts one answered request of `type` with `outcome` (`ok` or an error code name) that
    /// took `nanoseconds`.
    func record(type: String, outcome: String, nanoseconds: UInt64) {
        counter(type: type, outcome: outcome).increment()
        latency(type: type).recordNanoseconds(Int64(clamping: nanoseconds))
    }

    /// Counts a request answered without being served (refused at admission or validation).
    func refused(type: String, outcome: String) {
        counter(type: type, outcome: outcome).increment()
        if outcome == WireError.Code.overloaded.metricLabel { overloaded.increment() }
    }

    private func counter(type: String, outcome: String) -> Prometheus.Counter {
        let key = type + "|" + outcome
        if let known = counters.withLockedValue({ $0[key] }) { return known }
        let made = registry.counter("pharos_requests_total", labels: [("type", type), ("outcome", outcome)],
                                    help: "Requests answered, by message type and outcome (ok or the error code).")
        counters.withLockedValue { $0[key] = made }
        return made
    }

    private func latency(type: String) -> DurationHistogram {
        if let known = latencies.withLockedValue({ $0[type] }) { return known }
        let made = registry.histogram("pharos_request_duration_seconds", labels: [("type", type)],
                                      help: "Time from admission to reply, by message type.")
        latencies.withLockedValue { $0[type] = made }
        return made
    }
}

extension WireError.Code {
    /// The code as a metric label: `invalid_argument`, `stale_map`, ...
    public var metricLabel: String {
        switch self {
        case .unspecified: return "unspecified"
        case .malformed: return "malformed"
        case .unsupported: return "unsupported"
        case .invalidArgument: return "invalid_argument"
        case .notReady: return "not_ready"
        case .overloaded: return "overloaded"
        case .deadlineExceeded: return "deadline_exceeded"
        case .storage: return "storage"
        case .unavailable: return "unavailable"
        case .internalError: return "internal"
        case .staleMap: return "stale_map"
        case .unauthorized: return "unauthorized"
        }
    }
}

extension WireMessage {
    /// The outcome label of a reply: `ok`, or the error's code.
    var outcomeLabel: String {
        if case let .error(error) = self { return error.code.metricLabel }
        return "ok"
    }
}
