extension Collection where Element == Double {
    /// The value at fraction `p` (0...1) of the sorted values, nearest rank rounded down
    /// (`percentile(0.99)` of 500 latencies is the 496th smallest). The collection must not be empty.
    public func percentile(_ p: Double) -> Double {
        precondition(!isEmpty, "the percentile of no values")
        let sorted = self.sorted()
        return sorted[Swift.min(sorted.count - 1, Int(p * Double(sorted.count)))]
    }

    /// The middle value (the upper one of an even count): `percentile(0.5)`.
    public var median: Double { percentile(0.5) }
}
