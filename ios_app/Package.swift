// swift-tools-version:5.9
// CLIPDeployKit: the iOS/macOS port of clipdeploy's app core (tokenizer, Pillow-exact preprocessing,
// statistics, parity, zero-shot, bundle reader, Core ML encoders, benchmark and latency report).
// It mirrors the JVM core in android_app/clipdeploy-core and is tested against the same goldens/.
import PackageDescription

let package = Package(
    name: "CLIPDeployKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "CLIPDeployKit", targets: ["CLIPDeployKit"]),
        // the Swift twins of the JVM core's ReportTool and TokenizeTool; they run wherever Swift does
        .executable(name: "clipdeploy-report", targets: ["clipdeploy-report"]),
        .executable(name: "clipdeploy-tokenize", targets: ["clipdeploy-tokenize"]),
    ],
    targets: [
        .target(
            name: "CLIPDeployKit",
            path: "Sources/CLIPDeployKit"
        ),
        .executableTarget(name: "clipdeploy-report", dependencies: ["CLIPDeployKit"],
                          path: "Sources/clipdeploy-report"),
        .executableTarget(name: "clipdeploy-tokenize", dependencies: ["CLIPDeployKit"],
                          path: "Sources/clipdeploy-tokenize"),
        .testTarget(
            name: "CLIPDeployKitTests",
            dependencies: ["CLIPDeployKit"],
            path: "Tests/CLIPDeployKitTests"
        ),
    ]
)
