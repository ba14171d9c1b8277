import CLIPDeployKit
import Foundation

exit(TokenizeTool.run(Array(CommandLine.arguments.dropFirst()), input: FileHandle.standardInput.readDataToEndOfFile(),
                      out: { FileHandle.standardOutput.write($0) }))
