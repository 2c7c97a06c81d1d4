import Foundation

/// Where a forward pass spends its time: wall seconds and multiply-adds per stage, summed over
/// every `EfficientNetLite0.forward` call given this profile (`pharos cnn-bench --profile`).
///
/// Stages: `stem` (a direct convolution), `expand 1x1`, `depthwise` (with the expansion's bias
/// and ReLU6), `project 1x1`, `head 1x1` (the GEMMs alone), `bias + ReLU6` and `bias + residual
/// sum` (the other GEMMs' epilogues); the convolutions' stages are named with their output's
/// width x height, which tells small maps (where a GEMM's inner dimension is short) from large. Safe to share between
/// threads; timing costs two clock reads per stage measured (a few hundred per image with bands).
public final class ForwardProfile: @unchecked Sendable {
    /// One stage's totals.
    public struct Stage: Sendable, Equatable {
        /// Wall seconds spent in the stage.
        public var seconds: Double = 0
        /// Multiply-adds the stage performed (0 for element-wise stages).
        public var multiplyAdds: Int = 0
    }

    private let lock = NSLock()
    private var totals: [String: Stage] = [:]
    private var order: [String] = []

    /// An empty profile.
    public init() {}

    /// The stages in the order they first ran, with their totals.
    public var stages: [(name: String, stage: Stage)] {
        lock.withLock { order.map { ($0, totals[$0]!) } }
    }

    /// Runs `body`, adding its wall time and `multiplyAdds` to `stage`.
    @inline(__always)
    func measure<T>(_ stage: String, multiplyAdds: Int = 0, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        lock.withLock {
            if totals[stage] == nil { order.append(stage) }
            totals[stage, default: Stage()].seconds += seconds
            totals[stage, default: Stage()].multiplyAdds += multiplyAdds
        }
        return result
    }
}

extension Optional where Wrapped == ForwardProfile {
    /// `body`, timed into the profile when there is one.
    @inline(__always)
    func measure<T>(_ stage: String, multiplyAdds: Int = 0, _ body: () throws -> T) rethrows -> T {
        switch self {
        case .none: return try body()
        case .some(let profile): return try profile.measure(stage, multiplyAdds: multiplyAdds, body)
        }
    }
}
