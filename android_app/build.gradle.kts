// Plugin versions are pinned once here (from gradle/libs.versions.toml) and applied by the modules.
// :clipdeploy-core uses Gradle's built-in `java-library` plugin and needs none of these.
plugins {
    alias(libs.plugins.android.application) apply false
    alias(libs.plugins.android.library) apply false
    alias(libs.plugins.kotlin.android) apply false
}
