// clipdeploy Android: the pure-Java core (built and tested anywhere with a JDK), the Android runtime
// bindings (ExecuTorch, ONNX Runtime, Bitmap/CameraX pixels) and the demo + benchmark app.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    // Repositories are declared here once; a module that declares its own is ignored (with a warning).
    repositoriesMode.set(RepositoriesMode.PREFER_SETTINGS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "clipdeploy-android-app"
include(":clipdeploy-core", ":clipdeploy-android", ":app")
