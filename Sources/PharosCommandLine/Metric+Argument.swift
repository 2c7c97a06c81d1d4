import ArgumentParser
import PharosIndex

/// `--metric ip|l2` on every command.
extension Metric: ExpressibleByArgument {}
