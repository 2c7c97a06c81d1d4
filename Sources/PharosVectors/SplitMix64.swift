import Foundation

/// A small, fast, seedable generator (SplitMix64) so that training is reproducible under a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator; equal seeds give equal sequences on every platform.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }

    /// A standard normal sample (Box-Muller).
    public mutating func nextGaussian() -> Float {
        let u1 = Swift.max(Double(next() >> 11) * (1.0 / 9007199254740992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9007199254740992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// `count` distinct indices drawn uniformly from `0..<population` (partial Fisher-Yates),
    /// returned in ascending order so that gathered rows keep file order.
    public mutating func sample(_ count: Int, from population: Int) -> [Int] {
        if count >= population { return Array(0..<population) }
        var picked = [Int: Int]()
        var out = [Int]()
        out.reserveCapacity(count)
        for i in 0..<count {
            let j = i + Int(next() % UInt64(population - i))
            let vi = picked[i] ?? i
            let vj = picked[j] ?? j
            picked[j] = vi
            out.append(vj)
        }
        return out.sorted()
    }
}
