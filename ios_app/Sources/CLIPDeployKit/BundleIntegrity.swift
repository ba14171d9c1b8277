import Foundation

/// The integrity record of one opened bundle (the manifest's `integrity` block, schema_version 2) and every
/// check made against it: the path rule, the open-time stat pass, and per-file sha256 before a file is read or an
/// artifact loaded. The contract of `clipdeploy.latency.integrity`, the same in Python, the JVM core and here.
///
/// Verified digests are cached for the life of the process, per file, keyed by its real path and (size, mtime,
/// ctime, inode, device): a second verification of an unchanged file costs a `stat`, any write hashes it again.
public final class BundleIntegrity {
    public static let algorithm = "sha256"
    public static let maxPathChars = 1024
    public static let maxFiles = 100_000

    /// One entry of the record.
    public struct Entry: Equatable {
        public let size: Int64
        public let sha256: String
    }

    /// The bundle directory as it was passed (for messages).
    public let dir: URL
    /// Its real path (symlinks resolved): every path the manifest names must resolve inside it.
    public let root: String
    /// Bundle-relative POSIX path -> size and sha256.
    public let files: [String: Entry]
    /// `files`' keys, sorted.
    public let paths: [String]

    /// The bundle this record belongs to (weak: the bundle owns its record), so an artifact can reach its
    /// bundle's classifier (`ModelBundle.Artifact.bundle`).
    weak var owner: ModelBundle?

    static let reexport = "re-export the bundle with clip-export"
    static let recopy = "the bundle was copied while being written or truncated; re-copy it (or re-export it)"

    init(dir: URL, root: String, files: [String: Entry]) {
        self.dir = dir
        self.root = root
        self.files = files
        self.paths = files.keys.sorted()
    }

    private var where_: String { "bundle \(dir.path)" }

    // MARK: the path rule

    /// Why `rel` is not a safe bundle-relative path, or nil when it is (no filesystem access): a non-empty string
    /// of at most 1024 characters, no NUL, no backslash, not absolute (`/`, a drive letter `C:`), no empty, `.` or
    /// `..` component.
    public static func unsafeReason(_ rel: String) -> String? {
        if rel.isEmpty { return "is not a non-empty string" }
        let scalars = Array(rel.unicodeScalars)
        if scalars.count > maxPathChars { return "is longer than \(maxPathChars) characters" }
        if scalars.contains("\u{0}") { return "holds a NUL character" }
        if scalars.contains("\\") { return "holds a backslash (bundle paths use '/')" }
        if scalars[0] == "/" { return "is absolute" }
        if scalars.count >= 2, scalars[1] == ":", scalars[0].isASCII,
           ("A"..."Z").contains(scalars[0]) || ("a"..."z").contains(scalars[0]) {
            return "is absolute"
        }
        let parts = rel.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0 == ".." }) { return "contains '..'" }
        if parts.contains(where: { $0.isEmpty || $0 == "." }) { return "has an empty or '.' component" }
        return nil
    }

    /// A path for a message: quoted, control characters escaped, at most 200 characters.
    static func q(_ s: String) -> String {
        var out = "'"
        var n = 0
        for u in s.unicodeScalars {
            if n >= 200 {
                out += "..."
                break
            }
            if u.value < 0x20 || u.value == 0x7f {
                out += String(format: "\\x%02x", u.value)
            } else {
                out.unicodeScalars.append(u)
            }
            n += 1
        }
        return out + "'"
    }

    /// `rel` under the bundle after the lexical check, with symlinks resolved (the longest existing prefix through
    /// `realpath`, the rest appended), refused unless it is the bundle's real directory or inside it.
    public func resolveInside(_ rel: String) throws -> String {
        if let why = BundleIntegrity.unsafeReason(rel) {
            throw CLIPDeployError(.unsafePath, "\(where_): manifest path \(BundleIntegrity.q(rel)) \(why): a bundle may "
                                  + "only name files inside itself; \(BundleIntegrity.reexport)")
        }
        var existing = root + "/" + rel
        var rest: [String] = []
        while !FileIO.exists(existing) {
            let ns = existing as NSString
            rest.insert(ns.lastPathComponent, at: 0)
            existing = ns.deletingLastPathComponent
            if existing.count <= root.count { break }
        }
        guard var real = FileIO.realpath(existing) else {
            throw CLIPDeployError(.unsafePath, "\(where_): manifest path \(BundleIntegrity.q(rel)) goes through a broken "
                                  + "symlink: a bundle holds regular files only; replace the link with the file")
        }
        for r in rest { real += "/" + r }
        let prefix = root.hasSuffix("/") ? root : root + "/"
        guard real == root || real.hasPrefix(prefix) else {
            throw CLIPDeployError(.unsafePath, "\(where_): manifest path \(BundleIntegrity.q(rel)) resolves outside the "
                                  + "bundle (to \(real)) through a symlink: a bundle may only name files inside itself; "
                                  + "replace the link with the file")
        }
        return real
    }

    /// The listed files that make up `rel`: the file itself, or every listed file under a directory.
    public func listed(_ rel: String) throws -> [String] {
        if files[rel] != nil { return [rel] }
        let prefix = rel + "/"
        let inner = paths.filter { $0.hasPrefix(prefix) }
        if inner.isEmpty {
            throw CLIPDeployError(.integrity, "\(where_): \(BundleIntegrity.q(rel)) is named by the manifest but has no "
                                  + "integrity record; \(BundleIntegrity.reexport)")
        }
        return inner
    }

    /// The lexical and symlink check and the listing of a path the manifest names (no hashing).
    @discardableResult
    public func checkPath(_ rel: String) throws -> String {
        let real = try resolveInside(rel)
        _ = try listed(rel)
        return real
    }

    /// Every listed file exists inside the bundle, is a regular file and has its recorded size (a bundle copied
    /// while it was written, or truncated, fails here as `.incomplete` before anything is read).
    public func statAll() throws {
        for rel in paths {
            let want = files[rel]!.size
            let real = try resolveInside(rel)
            switch FileIO.stat(real) {
            case .failure(let e) where e.isNoEntry:
                throw CLIPDeployError(.incomplete, "\(where_) is incomplete: \(rel) is missing; \(BundleIntegrity.recopy)")
            case .failure(let e):
                throw CLIPDeployError(.unreadable, "\(where_): cannot stat \(rel) (\(e.text)): check the bundle's "
                                      + "permissions")
            case .success(let st):
                if !st.isRegular {
                    throw CLIPDeployError(.integrity, "\(where_): \(rel) is not a regular file; \(BundleIntegrity.reexport)")
                }
                if st.size != want {
                    let state = st.size < want ? "incomplete" : "modified"
                    throw CLIPDeployError(.incomplete, "\(where_) is \(state): \(rel) is \(st.size) bytes, the manifest "
                                          + "records \(want); \(BundleIntegrity.recopy)")
                }
            }
        }
    }

    // MARK: digests

    private static let lock = NSLock()
    private static var digests: [String: String] = [:]
    private static var hashed: UInt64 = 0
    private static var hits: UInt64 = 0

    /// Bytes this process has hashed so far (tests: the cache answers a second verification).
    public static var hashedBytes: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return hashed
    }

    /// Verifications the digest cache answered.
    public static var cacheHits: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return hits
    }

    /// Checks the file or directory `rel` the manifest names against the record (a directory: also that it holds
    /// no file the record does not list) and returns its real URL: what to call before reading a bundle file or
    /// loading an artifact.
    @discardableResult
    public func verify(_ rel: String) throws -> URL {
        let real = try checkPath(rel)
        let members = try listed(rel)
        if case .success(let st) = FileIO.stat(real), st.isDirectory {
            let known = Set(members)
            if let extra = try firstUnlisted(real: real, rel: rel, known: known, depth: 0) {
                throw CLIPDeployError(.unlistedFile, "\(where_): \(BundleIntegrity.q(extra)) is not in the manifest's "
                                      + "integrity record (a file was added to \(rel)); remove it, or re-copy the bundle "
                                      + "(or re-export it)")
            }
        }
        for m in members { try verifyOne(m) }
        return URL(fileURLWithPath: real)
    }

    /// Every file of the record against its sha256.
    public func verifyAll() throws {
        for rel in paths { try verifyOne(rel) }
    }

    /// The first entry under the directory `real` (bundle path `rel`) that is not a listed file: a file, a
    /// symlink or anything else but a directory (directories are walked, not followed through links).
    private func firstUnlisted(real: String, rel: String, known: Set<String>, depth: Int) throws -> String? {
        guard depth < 64 else { return rel }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: real).sorted()
        } catch {
            throw CLIPDeployError(.unreadable, "\(where_): cannot list \(rel) (\(oneLine(error))): check the bundle's "
                                  + "permissions")
        }
        for name in names {
            let sub = rel + "/" + name
            let path = real + "/" + name
            if case .success(let st) = FileIO.lstat(path), st.isDirectory {
                if let x = try firstUnlisted(real: path, rel: sub, known: known, depth: depth + 1) { return x }
            } else if !known.contains(sub) {
                return sub
            }
        }
        return nil
    }

    private func verifyOne(_ rel: String) throws {
        guard let ent = files[rel] else {
            throw CLIPDeployError(.integrity, "\(where_): \(BundleIntegrity.q(rel)) has no integrity record; "
                                  + BundleIntegrity.reexport)
        }
        let real = try resolveInside(rel)
        let st: FileIO.Stat
        switch FileIO.stat(real) {
        case .failure(let e) where e.isNoEntry:
            throw CLIPDeployError(.incomplete, "\(where_): \(rel) is missing (removed since the bundle was opened?); "
                                  + BundleIntegrity.recopy)
        case .failure(let e):
            throw CLIPDeployError(.unreadable, "\(where_): cannot stat \(rel) (\(e.text)): check the bundle's permissions")
        case .success(let s):
            st = s
        }
        if !st.isRegular {
            throw CLIPDeployError(.integrity, "\(where_): \(rel) is not a regular file; \(BundleIntegrity.reexport)")
        }
        if st.size != ent.size {
            throw CLIPDeployError(.integrity, "\(where_): \(rel) is \(st.size) bytes, the manifest records \(ent.size): "
                                  + "the file was modified or cut short; re-copy the bundle (or re-export it)")
        }
        let key = real + "\u{0}" + st.cacheKey
        BundleIntegrity.lock.lock()
        var h = BundleIntegrity.digests[key]
        if h != nil { BundleIntegrity.hits += 1 }
        BundleIntegrity.lock.unlock()
        if h == nil {
            let got: String
            do {
                got = try SHA256.hash(contentsOf: URL(fileURLWithPath: real)).hex
            } catch {
                throw CLIPDeployError(.unreadable, "\(where_): cannot read \(rel) (\(oneLine(error))); re-copy the bundle")
            }
            h = got
            BundleIntegrity.lock.lock()
            BundleIntegrity.hashed += UInt64(st.size)
            if case .success(let after) = FileIO.stat(real), after == st {       // unchanged while it was hashed
                if BundleIntegrity.digests.count >= 20_000 { BundleIntegrity.digests.removeAll() }
                BundleIntegrity.digests[key] = got
            }
            BundleIntegrity.lock.unlock()
        }
        if h != ent.sha256 {
            throw CLIPDeployError(.integrity, "\(where_): \(rel) does not match the manifest (sha256 \(h!.prefix(12))... "
                                  + "!= \(ent.sha256.prefix(12))...): the file was modified or corrupted; re-copy the "
                                  + "bundle (or re-export it)")
        }
    }

    // MARK: the record

    /// The manifest's `integrity` block, shape-checked (`where`: the manifest's path, for messages).
    static func parse(_ block: Any?, where mf: String) throws -> [String: Entry] {
        let fix = "\(reexport) (bundles from before schema_version 2 have no digests)"
        guard let b = block as? [String: Any] else {
            throw CLIPDeployError(.invalidManifest, "\(mf): manifest has no 'integrity' record (got \(Json.kind(block))); "
                                  + fix)
        }
        guard let alg = b["algorithm"] as? String, alg == algorithm else {
            throw CLIPDeployError(.invalidManifest, "\(mf): integrity algorithm \(ManifestSchema.describe(b["algorithm"])) "
                                  + "is not supported ('\(algorithm)'); \(fix)")
        }
        guard let f = b["files"] as? [String: Any], !f.isEmpty, f.count <= maxFiles else {
            throw CLIPDeployError(.invalidManifest, "\(mf): integrity record lists no files (or more than \(maxFiles)); "
                                  + fix)
        }
        var out: [String: Entry] = [:]
        for rel in f.keys.sorted() {
            if let why = unsafeReason(rel) {
                throw CLIPDeployError(.unsafePath, "\(mf): integrity path \(q(rel)) \(why): a bundle may only name files "
                                      + "inside itself; \(reexport)")
            }
            if rel == "manifest.json" {
                throw CLIPDeployError(.invalidManifest, "\(mf): integrity record lists manifest.json itself; \(reexport)")
            }
            let e = f[rel] as? [String: Any]
            guard let size = Json.integer(of: e?["size"]), size >= 0, let sha = e?["sha256"] as? String,
                  isHex64(sha) else {
                throw CLIPDeployError(.invalidManifest, "\(mf): integrity entry for \(q(rel)) is not {size: int >= 0, "
                                      + "sha256: 64 lowercase hex digits}; \(reexport)")
            }
            out[rel] = Entry(size: size, sha256: sha)
        }
        return out
    }

    static func isHex64(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return u.count == 64 && u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
