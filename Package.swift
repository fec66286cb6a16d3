// swift-tools-version:6.0
import PackageDescription

// Layers (see README.md): MemoryModel → PageWalk → ProcFS; Scenario and
// KernelSnapshot build MemoryModel address spaces; ptwalk and the benchmark
// sit on top. No package dependencies: the toolchain only.
let package = Package(
    name: "PageWalk",
    products: [
        .library(name: "MemoryModel", targets: ["MemoryModel"]),
        .library(name: "Scenario", targets: ["Scenario"]),
        .library(name: "KernelSnapshot", targets: ["KernelSnapshot"]),
        .library(name: "PageWalk", targets: ["PageWalk"]),
        .library(name: "ProcFS", targets: ["ProcFS"]),
        // Everything a walker client needs, behind one import.
        .library(name: "PageWalkKit", targets: ["PageWalkKit"]),
        .executable(name: "ptwalk", targets: ["ptwalk"]),
        .executable(name: "pagewalk-bench", targets: ["PageWalkBench"]),
    ],
    targets: [
        .target(name: "MemoryModel"),
        .target(name: "PageWalk", dependencies: ["MemoryModel"]),
        .target(name: "ReferenceModel", dependencies: ["MemoryModel"]),
        .target(name: "Scenario", dependencies: ["MemoryModel", "PageWalk"]),
        .target(name: "KernelSnapshot", dependencies: ["MemoryModel"]),
        .target(name: "ProcFS", dependencies: ["MemoryModel", "PageWalk"]),
        .target(name: "PageWalkKit", dependencies: ["MemoryModel", "PageWalk", "ProcFS", "Scenario", "KernelSnapshot"]),
        // An example client of the range walker (docs/RANGE-WALK.md).
        .executableTarget(name: "page-kinds", dependencies: ["PageWalkKit"]),
        .executableTarget(name: "ptwalk", dependencies: ["MemoryModel", "PageWalk", "ProcFS", "Scenario", "KernelSnapshot"]),
        .executableTarget(
            name: "PageWalkBench",
            dependencies: ["MemoryModel", "PageWalk", "ProcFS", "Scenario", "KernelSnapshot", "LiveKernel"],
            path: "Benchmarks/PageWalkBench"
        ),
        // Helpers several test targets share (seeded generator, producer
        // output capture, fixture copies); not a product.
        .target(name: "TestKit", dependencies: ["MemoryModel", "PageWalk", "ProcFS"], path: "Tests/TestKit"),
        // Real mappings and kernel knobs in this process (undone at
        // tear-down) and the host's facts; shared by the live tests and the
        // benchmark's kernel row, not a product.
        .target(name: "LiveKernel", dependencies: ["MemoryModel", "ProcFS", "KernelSnapshot"], path: "Tests/LiveKernel"),
        .testTarget(name: "MemoryModelTests", dependencies: ["MemoryModel", "PageWalk", "ReferenceModel", "TestKit"]),
        .testTarget(name: "PageWalkTests", dependencies: ["PageWalk", "MemoryModel", "ReferenceModel", "Scenario", "TestKit"]),
        .testTarget(name: "ProcFSTests", dependencies: ["ProcFS", "PageWalk", "MemoryModel", "Scenario", "KernelSnapshot", "ReferenceModel", "TestKit", "LiveKernel"]),
        .testTarget(name: "ScenarioTests", dependencies: ["Scenario", "MemoryModel", "PageWalk"]),
        .testTarget(name: "KernelSnapshotTests", dependencies: ["KernelSnapshot", "MemoryModel", "ProcFS", "PageWalk", "TestKit", "LiveKernel"]),
        // Runs the built ptwalk executable (found next to the test bundle).
        .testTarget(name: "PtwalkTests", dependencies: ["ProcFS", "PageWalk", "MemoryModel", "Scenario", "KernelSnapshot", "TestKit", "LiveKernel"]),
        .testTarget(name: "ReliabilityTests",
                    dependencies: ["MemoryModel", "PageWalk", "ProcFS", "ReferenceModel", "Scenario", "KernelSnapshot", "TestKit"]),
    ]
)
