import Foundation

/// The one error type of the kit: a kind and a one-line message that names the file or value at fault
/// (the JVM core's JsonException / BundleException / IOException / IllegalArgumentException messages).
///
/// A bundle is untrusted input: what `ModelBundle` refuses has one of the refusal kinds (`isBundleRefusal`),
/// the JVM core's `BundleException.Kind`, so a caller can switch on what is wrong:
///
/// | kind | the bundle ... | JVM |
/// |---|---|---|
/// | `notFound` | directory or its manifest.json does not exist | NOT_FOUND |
/// | `unsupportedSchema` | manifest's `schema_version` is not 2 (1 has no integrity record) | SCHEMA |
/// | `invalidManifest` | manifest is not strict JSON, too large, a key is missing / of the wrong type, or the integrity record is malformed | NOT_JSON, SCHEMA |
/// | `unsafePath` | names a path that is absolute, has `..` (`.`, empty, backslash, NUL) or resolves outside it through a symlink | UNSAFE_PATH |
/// | `incomplete` | a listed file is missing or not its recorded size (copied while being written, truncated) | INCOMPLETE |
/// | `integrity` | a file's sha256 differs from the record, or a named path has no record, or is not a regular file | INTEGRITY |
/// | `unlistedFile` | a directory artifact (`.mlpackage`) holds a file the record does not list | INTEGRITY |
/// | `malformedArray` | an `.npy` is malformed (header, shape, truncated, trailing data), or the probe arrays do not fit | ARRAY |
/// | `unreadable` | a file could not be read (I/O error, permission) | UNREADABLE |
public struct CLIPDeployError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public enum Kind: String, CaseIterable {
        case json, npy, bundle, tokenizer, preprocess, parity, encoder, benchmark, report
        case notFound = "not_found"
        case unsupportedSchema = "unsupported_schema"
        case invalidManifest = "invalid_manifest"
        case unsafePath = "unsafe_path"
        case incomplete
        case integrity
        case unlistedFile = "unlisted_file"
        case malformedArray = "malformed_array"
        case unreadable

        /// The kinds `ModelBundle` refuses a bundle with (nothing of it is run).
        public static let bundleRefusals: Set<Kind> = [
            .notFound, .unsupportedSchema, .invalidManifest, .unsafePath, .incomplete, .integrity, .unlistedFile,
            .malformedArray, .unreadable,
        ]
    }

    public let kind: Kind
    public let message: String

    /// `message` is kept on one line (line breaks become spaces).
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message.contains(where: { $0.isNewline })
            ? message.split(whereSeparator: { $0.isNewline }).joined(separator: " ") : message
    }

    /// Whether this error is a refusal of the bundle (integrity, unsafe path, incomplete copy, schema, ...).
    public var isBundleRefusal: Bool { Kind.bundleRefusals.contains(kind) }

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

/// What the app shows (and writes to a benchmark's `.error` file): `oneLine`, prefixed with the kind when the
/// bundle was refused — "bundle refused (integrity): bundle X: probe/images.npy does not match the manifest ...".
public func oneLineWithKind(_ error: Error) -> String {
    if let e = error as? CLIPDeployError, e.isBundleRefusal {
        return "bundle refused (\(e.kind.rawValue)): \(oneLine(e))"
    }
    return oneLine(error)
}
