import SwiftUI

/// CLIPDeploy for iOS: live zero-shot classification from the camera, text -> photo search, and the
/// on-device benchmark that writes a clip-latency report. All model code is in CLIPDeployKit.
@main
struct CLIPDeployApp: App {
    @StateObject private var model = AppModel()

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
                .onAppear { model.loadInitialBundle() }
        }
    }
}
