// swift-tools-version:6.0
// Pharos: a distributed image-retrieval index. See ARCHITECTURE.md for the module map.
import PackageDescription

/// Optimisations that matter for the scan loops even in debug test builds are kept in C
/// (`PharosKernels`); Swift targets use the package defaults.
let package = Package(
    name: "Pharos",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "PharosVectors", targets: ["PharosVectors"]),
        .library(name: "PharosIndex", targets: ["PharosIndex"]),
        .library(name: "PharosStorage", targets: ["PharosStorage"]),
        .executable(name: "pharos", targets: ["pharos"]),
        .executable(name: "pharos-shard", targets: ["pharos-shard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System-library shims: a module map and one header each, nothing else.
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CProtobufC", pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]),
        .systemLibrary(
            name: "CLZ4", pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]),

        // SIMD kernels (ADC scans, 4-bit fast scan, CRC32C) with run-time CPU dispatch.
        .target(
            name: "PharosKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-strict-aliasing", "-ffp-contract=off"])]),

        .target(name: "PharosVectors", dependencies: ["COpenBLAS", "PharosKernels"]),
        .target(name: "PharosIndex", dependencies: ["PharosVectors", "PharosKernels"]),
        .target(name: "PharosStorage", dependencies: ["PharosIndex", "PharosVectors", "PharosKernels", "CLZ4"]),
        // Terminal helpers shared by the executables (progress bars, messages).
        .target(
            name: "PharosCommandLine",
            dependencies: ["PharosIndex", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "pharos",
            dependencies: [
                "PharosIndex", "PharosVectors", "PharosKernels", "PharosCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "pharos-shard",
            dependencies: [
                "PharosStorage", "PharosIndex", "PharosVectors", "PharosCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "PharosVectorsTests", dependencies: ["PharosVectors"]),
        .testTarget(name: "PharosIndexTests", dependencies: ["PharosIndex", "PharosVectors"]),
        .testTarget(name: "PharosStorageTests", dependencies: ["PharosStorage", "PharosIndex", "PharosVectors"]),
    ],
    swiftLanguageModes: [.v6]
)
