import Foundation

/// The one error type of the kit: a kind and a one-line message that names the file or value at fault
/// (the JVM core's JsonException / BundleException / IOException / IllegalArgumentException messages).
public struct CLIPDeployError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public enum Kind: String {
        case json, npy, bundle, tokenizer, preprocess, parity, encoder, benchmark, report
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A one-line description of any error, for records' `reason` and report error files.
public func oneLine(_ error: Error) -> String {
    let text: String
    if let e = error as? CLIPDeployError {
        text = e.message
    } else if let e = error as? LocalizedError, let d = e.errorDescription {
        text = d
    } else {
        text = String(describing: error)
    }
    let line = text.split(whereSeparator: { $0.isNewline }).joined(separator: " ")
    return line.isEmpty ? String(describing: type(of: error)) : line
}
