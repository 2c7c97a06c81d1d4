import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// The metrics of one process, exported in Prometheus text format on the admin port.
///
/// Series are made here with their help text (Prometheus linters require one per family);
/// the same name and labels give back the same series. Values that are cheaper to read than to
/// keep current (entries, segments, resident memory) are set by scrape hooks just before each
/// exposition. `bootstrapMetricsSystem` routes swift-metrics into the same registry, so any
/// library that reports through swift-metrics appears on the same page.
public final class MetricsRegistry: Sendable {
    /// The underlying Prometheus registry.
    public let prometheus: PrometheusCollectorRegistry
    private let hooks = NIOLockedValueBox<[@Sendable () -> Void]>([])

    /// Latency buckets of request durations: 100 µs to 30 s.
    public static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// Buckets of background work (fsyncs, seals, compactions): 100 µs to 5 min.
    public static let maintenanceBuckets: [Duration] = [
        .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50),
        .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    /// An empty registry.
    public init() { prometheus = PrometheusCollectorRegistry() }

    /// Routes swift-metrics (`Counter(label:)`, `Timer(label:)`, ...) into this registry.
    /// Call once per process, before any library makes a metric.
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: prometheus))
    }

    /// The counter `name` with `labels`.
    public func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Prometheus.Counter {
        prometheus.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
    }

    /// The gauge `name` with `labels`.
    public func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Prometheus.Gauge {
        prometheus.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
    }

    /// The duration histogram `name` with `labels` (seconds in the exposition).
    public func histogram(_ name: String, labels: [(String, String)] = [], buckets: [Duration] = latencyBuckets,
                          help: String) -> DurationHistogram {
        prometheus.makeDurationHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Runs `hook` before every exposition (it sets gauges from current state). Hooks must be
    /// quick and must not block on I/O: a scrape waits for them.
    public func onScrape(_ hook: @escaping @Sendable () -> Void) {
        hooks.withLockedValue { $0.append(hook) }
    }

    /// The exposition: hooks run, then every series in text format 0.0.4.
    public func exposition() -> [UInt8] {
        for hook in hooks.withLockedValue({ $0 }) { hook() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 << 10)
        prometheus.emit(into: &buffer)
        return buffer
    }
}
