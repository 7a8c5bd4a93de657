// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "mmpolicy",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mmpolicy", targets: ["mmpolicy"]),
        .executable(name: "mmpolicy-workload", targets: ["mmpolicy-workload"]),
        .executable(name: "mmpolicy-bench", targets: ["mmpolicy-bench"]),
        .library(name: "BPFKit", targets: ["BPFKit"]),
        .library(name: "MMPolicyCore", targets: ["MMPolicyCore"]),
        .library(name: "MMPolicyWatchdog", targets: ["MMPolicyWatchdog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(name: "CMMPolicyABI"),
        .target(
            name: "BPFKit",
            dependencies: ["CLibBPF", .product(name: "SystemPackage", package: "swift-system")]
        ),
        .target(
            name: "MMPolicyCore",
            dependencies: [
                "BPFKit", "CMMPolicyABI", "CZlib",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(
            name: "MMPolicyKinds",
            dependencies: ["BPFKit", "MMPolicyCore", "CMMPolicyABI"]
        ),
        .target(
            name: "MMPolicyWatchdog",
            dependencies: ["BPFKit", "MMPolicyCore", .product(name: "SystemPackage", package: "swift-system")]
        ),
        .target(
            name: "MMPolicyDaemon",
            dependencies: [
                // No MMPolicyKinds: the daemon runs whatever kinds its configuration's registry holds.
                "BPFKit", "CLibBPF", "MMPolicyCore", "MMPolicyWatchdog",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "mmpolicy",
            dependencies: [
                "BPFKit", "CLibBPF", "CMMPolicyABI", "MMPolicyCore", "MMPolicyKinds", "MMPolicyDaemon", "MMPolicyWatchdog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "mmpolicy-workload",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "tools/workload"
        ),
        .executableTarget(
            name: "mmpolicy-bench",
            dependencies: [
                "BPFKit", "MMPolicyCore", "MMPolicyKinds", "MMPolicyWatchdog", "MMPolicyDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/mmpolicy-bench"
        ),
        .target(
            name: "MMPolicyTestSupport",
            dependencies: [
                "MMPolicyCore", .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Tests/MMPolicyTestSupport"
        ),
        .testTarget(name: "BPFKitTests", dependencies: ["BPFKit", "CLibBPF", "CMMPolicyABI", "MMPolicyTestSupport"]),
        .testTarget(name: "MMPolicyCoreTests", dependencies: ["MMPolicyCore", "MMPolicyKinds", "BPFKit", "CMMPolicyABI", "MMPolicyTestSupport"]),
        .testTarget(name: "MMPolicyKindsTests", dependencies: ["MMPolicyKinds", "MMPolicyCore", "BPFKit", "MMPolicyTestSupport"]),
        .testTarget(name: "MMPolicyWatchdogTests", dependencies: [
            "MMPolicyWatchdog", "MMPolicyCore", "MMPolicyKinds", "BPFKit", "CMMPolicyABI", "MMPolicyTestSupport",
        ]),
        .testTarget(name: "MMPolicyDaemonTests", dependencies: [
            "MMPolicyDaemon", "MMPolicyCore", "MMPolicyTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .testTarget(
            name: "LiveKernelTests",
            dependencies: [
                "BPFKit", "MMPolicyCore", "MMPolicyKinds", "MMPolicyDaemon", "CMMPolicyABI", "MMPolicyTestSupport",
                "mmpolicy", "mmpolicy-workload",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
