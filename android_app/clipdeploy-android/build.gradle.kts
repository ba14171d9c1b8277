// Android bindings for the pure-Java core: ExecuTorch (XNNPACK .pte), ONNX Runtime and LiteRT (.tflite) encoder runtimes,
// Bitmap / CameraX pixels -> RgbImage, memory and host probes, and the ClipPipeline used by the app.
// Needs the Android SDK (Android Studio, or CI's ubuntu runner); not built on the Linux dev machine.
plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.clipdeploy.android"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        minSdk = libs.versions.minSdk.get().toInt()
        consumerProguardFiles("consumer-rules.pro")
        // Reported in each record's runtime_versions (neither runtime's Java API exposes its version).
        buildConfigField("String", "EXECUTORCH_VERSION", "\"${libs.versions.executorch.get()}\"")
        buildConfigField("String", "ONNXRUNTIME_VERSION", "\"${libs.versions.onnxruntime.get()}\"")
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
    }

    buildFeatures {
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    api(project(":clipdeploy-core"))
    implementation(libs.executorch.android)
    implementation(libs.onnxruntime.android)
    // LiteRT 2.3.0: the release that reads what ai-edge-litert 2.3.0 / litert-torch 0.10.0 write (see libs.versions.toml)
    implementation(libs.litert.runtime)
    // ImageProxy (CameraX analysis frames) in BitmapPixels; compileOnly would force every user to add it.
    implementation(libs.camera.core)

    // JVM unit tests of the pure pixel helpers (no Android classes): gradle :clipdeploy-android:testDebugUnitTest
    testImplementation(libs.junit)
}
