import PharosKernels

/// The SIMD level the kernels dispatched to on this machine.
func kernelLevelName() -> String { String(cString: pharos_kernel_level_name()) }
