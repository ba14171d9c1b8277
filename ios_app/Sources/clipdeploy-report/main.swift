import CLIPDeployKit
import Foundation

exit(ReportTool.run(Array(CommandLine.arguments.dropFirst())))
