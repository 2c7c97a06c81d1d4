import Foundation
import PharosKernels

/// Comparisons of the SIMD kernels with the portable ones. `pharos_kernel_force_portable` is
/// process-wide and tests run in parallel, so each comparison holds one lock over both of its
/// runs: without it another test's forcing could turn a "SIMD" run portable, and the
/// comparison would pass without comparing anything.
public enum KernelLevels {
    private static let lock = NSLock()

    /// `body` run with the SIMD kernels (where the CPU has them), then with the portable ones.
    public static func both<T>(_ body: () throws -> T) rethrows -> (simd: T, portable: T) {
        lock.lock()
        defer { lock.unlock() }
        pharos_kernel_force_portable(0)
        let simd = try body()
        pharos_kernel_force_portable(1)
        defer { pharos_kernel_force_portable(0) }
        return (simd, try body())
    }
}
