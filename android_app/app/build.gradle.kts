// The demo + benchmark app. Needs the Android SDK (Android Studio, or CI's ubuntu runner with
// `gradle -p android_app :app:assembleDebug`); nothing here builds on the Linux dev machine.
plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.clipdeploy.app"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        applicationId = "org.clipdeploy.app"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk {
            // the ABIs the ExecuTorch AAR ships (ONNX Runtime has more); phones are arm64, emulators x86_64
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    buildFeatures {
        buildConfig = true
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    packaging {
        jniLibs {
            // the ExecuTorch and ONNX Runtime AARs may both carry the NDK's shared C++ runtime / fbjni
            pickFirsts += listOf("**/libc++_shared.so", "**/libfbjni.so")
        }
    }

    sourceSets {
        // The instrumentation tests read the shared golden vectors (goldens/bundle: a miniature bundle whose
        // linear reference model the core runs; goldens/preprocess: PNGs with their exact tensors).
        getByName("androidTest") {
            assets.srcDir(rootProject.file("../goldens"))
        }
    }
}

dependencies {
    implementation(project(":clipdeploy-android"))
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.material)
    implementation(libs.camera.core)
    implementation(libs.camera.camera2)
    implementation(libs.camera.lifecycle)
    implementation(libs.camera.view)

    // JVM unit tests (no device): gradle :app:testDebugUnitTest
    testImplementation(libs.junit)

    // Instrumentation tests (a device or emulator): gradle :app:connectedDebugAndroidTest
    androidTestImplementation(libs.androidx.test.runner)
    androidTestImplementation(libs.androidx.test.rules)
    androidTestImplementation(libs.androidx.test.ext.junit)
    androidTestImplementation(libs.junit)
}
