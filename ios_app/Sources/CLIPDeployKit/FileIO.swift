import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// POSIX file access for the readers of untrusted files: `stat` / `lstat` (size, type, mtime, ctime, inode,
/// device), `realpath`, and a whole-file read whose size is checked before anything is allocated.
enum FileIO {
    struct Stat: Equatable {
        let size: Int64
        let mode: UInt32
        let mtimeNs: Int64
        let ctimeNs: Int64
        let inode: UInt64
        let device: UInt64

        var isRegular: Bool { mode & 0o170000 == 0o100000 }      // S_IFMT, S_IFREG (POSIX values, every platform)
        var isDirectory: Bool { mode & 0o170000 == 0o040000 }    // S_IFDIR
        var isSymlink: Bool { mode & 0o170000 == 0o120000 }      // S_IFLNK

        /// What the digest cache is keyed by (with the real path).
        var cacheKey: String { "\(size)\u{0}\(mtimeNs)\u{0}\(ctimeNs)\u{0}\(inode)\u{0}\(device)" }
    }

    private static func make(_ st: CStat) -> Stat {
        #if canImport(Darwin)
        let m = Int64(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(st.st_mtimespec.tv_nsec)
        let c = Int64(st.st_ctimespec.tv_sec) * 1_000_000_000 + Int64(st.st_ctimespec.tv_nsec)
        #else
        let m = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let c = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        #endif
        // truncatingIfNeeded: the field types differ by platform (Darwin's dev_t is Int32, mode_t UInt16)
        return Stat(size: Int64(truncatingIfNeeded: st.st_size), mode: UInt32(truncatingIfNeeded: st.st_mode),
                    mtimeNs: m, ctimeNs: c, inode: UInt64(truncatingIfNeeded: st.st_ino),
                    device: UInt64(truncatingIfNeeded: st.st_dev))
    }

    /// `stat(2)` (symlinks followed), or the errno.
    static func stat(_ path: String) -> Result<Stat, Errno> {
        var st = CStat()
        if statFollow(path, &st) != 0 { return .failure(Errno(code: errno)) }
        return .success(make(st))
    }

    /// `lstat(2)` (a symlink itself), or the errno.
    static func lstat(_ path: String) -> Result<Stat, Errno> {
        var st = CStat()
        if statNoFollow(path, &st) != 0 { return .failure(Errno(code: errno)) }
        return .success(make(st))
    }

    /// Whether anything (even a dangling symlink) is at `path`.
    static func exists(_ path: String) -> Bool {
        if case .success = lstat(path) { return true }
        return false
    }

    /// `realpath(3)` of an existing path, else nil.
    static func realpath(_ path: String) -> String? {
        #if canImport(Darwin)
        guard let p = Darwin.realpath(path, nil) else { return nil }
        #elseif canImport(Musl)
        guard let p = Musl.realpath(path, nil) else { return nil }
        #else
        guard let p = Glibc.realpath(path, nil) else { return nil }
        #endif
        defer { free(p) }
        return String(cString: p)
    }

    struct Errno: Error {
        let code: Int32
        var text: String { String(cString: strerror(code)) }
        var isNoEntry: Bool { code == ENOENT || code == ENOTDIR }
    }

    static func describe(_ code: Int32) -> String {
        return String(cString: strerror(code))
    }

    /// The whole file, refused (`tooLarge` kind) when larger than `maxBytes` before anything is allocated;
    /// an I/O failure is `.unreadable`. Messages start with the path.
    static func read(_ url: URL, maxBytes: Int, tooLarge: CLIPDeployError.Kind = .unreadable) throws -> Data {
        let path = url.path
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            throw CLIPDeployError(.unreadable, "\(path): cannot read (\(describe(errno)))")
        }
        defer { close(fd) }
        var st = CStat()
        if fstat(fd, &st) != 0 {
            throw CLIPDeployError(.unreadable, "\(path): cannot stat (\(describe(errno)))")
        }
        let info = make(st)
        if info.isDirectory { throw CLIPDeployError(.unreadable, "\(path): cannot read (it is a directory)") }
        if info.size > Int64(maxBytes) {
            throw CLIPDeployError(tooLarge, "\(path): \(info.size) bytes is more than the \(maxBytes) this reader accepts")
        }
        let size = Int(info.size)
        var data = Data(count: size)
        var got = 0
        let ok: Bool = data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) -> Bool in
            while got < size {
                let n = sysRead(fd, raw.baseAddress! + got, size - got)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                if n == 0 { break }
                got += n
            }
            return true
        }
        if !ok {
            throw CLIPDeployError(.unreadable, "\(path): cannot read (\(describe(errno)))")
        }
        // a file that changed size while it was read
        var extra: UInt8 = 0
        if got != size || sysRead(fd, &extra, 1) > 0 {
            throw CLIPDeployError(.unreadable, "\(path): the file changed while it was read; read it again")
        }
        return data
    }
}

#if canImport(Darwin)
typealias CStat = Darwin.stat
private func statFollow(_ p: String, _ st: inout Darwin.stat) -> Int32 { stat(p, &st) }
private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Int { Darwin.read(fd, buf, n) }
private func statNoFollow(_ p: String, _ st: inout Darwin.stat) -> Int32 { lstat(p, &st) }
#elseif canImport(Musl)
typealias CStat = Musl.stat
private func statFollow(_ p: String, _ st: inout Musl.stat) -> Int32 { stat(p, &st) }
private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Int { Musl.read(fd, buf, n) }
private func statNoFollow(_ p: String, _ st: inout Musl.stat) -> Int32 { lstat(p, &st) }
#else
typealias CStat = Glibc.stat
private func statFollow(_ p: String, _ st: inout Glibc.stat) -> Int32 { stat(p, &st) }
private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Int { Glibc.read(fd, buf, n) }
private func statNoFollow(_ p: String, _ st: inout Glibc.stat) -> Int32 { lstat(p, &st) }
#endif
