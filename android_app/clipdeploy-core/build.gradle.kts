// The platform-independent core of the Android library: plain Java 8, no dependencies, so it also
// builds and runs its JUnit tests on any JVM (`make jvm-test` at the repository root does exactly that
// with javac + JUnit 4, no Gradle needed).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

tasks.withType<JavaCompile>().configureEach {
    options.compilerArgs.addAll(listOf("-Xlint:all", "-Xlint:-options"))
}

tasks.test {
    // the shared golden vectors at the repository root (clip-latency goldens --out goldens)
    systemProperty("clipdeploy.goldens", rootProject.projectDir.resolve("../goldens").canonicalPath)
}
