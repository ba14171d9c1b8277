import Foundation

/// The text cleaning open_clip's tokenizer applies before BPE (`clean='lower'`):
/// `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is `ftfy.fix_text` followed by
/// `html.unescape` twice and a strip. A port of the JVM core's `TextCleaner`, working on Unicode scalars
/// (code points) throughout, never on Swift `Character`s (grapheme clusters).
///
/// ftfy is reproduced for every fix that applies to text typed or pasted on a phone: C1 controls read as
/// Windows-1252, Latin ligatures, full-/half-width forms, curly quotes, line breaks, terminal escapes,
/// control characters, NFC, HTML entities (repeated until stable, only when the text has no '<'). Not
/// reproduced: ftfy's mojibake repair and HTML entities outside the table below. Lone surrogates cannot
/// occur in a Swift `String` (they are replaced by U+FFFD when the string is made), so ftfy's
/// `fix_surrogates` needs no code here.
public enum TextCleaner {
    public typealias Scalars = [Unicode.Scalar]

    public static func clean(_ raw: String) -> String {
        return string(cleanScalars(Array(raw.unicodeScalars)))
    }

    static func cleanScalars(_ raw: Scalars) -> Scalars {
        var t = fixText(raw)
        t = htmlUnescape(htmlUnescape(t))
        t = collapseWhitespace(t)
        return lowerPython(t)
    }

    static func string(_ s: Scalars) -> String {
        var out = String()
        out.unicodeScalars.append(contentsOf: s)
        return out
    }

    /// Python's `str.isspace()` for one code point.
    public static func isPySpace(_ s: Unicode.Scalar) -> Bool {
        let c = s.value
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
            || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
            || c == 0x3000
    }

    /// `" ".join(text.split())`: runs of Python whitespace become one space, ends stripped.
    static func collapseWhitespace(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        var pending = false
        for c in t {
            if isPySpace(c) {
                pending = !out.isEmpty
            } else {
                if pending { out.append(" ") }
                pending = false
                out.append(c)
            }
        }
        return out
    }

    /// Python's `str.lower()`: every code point's full lowercase mapping, and capital sigma as final sigma
    /// (U+03C2) where it ends a word (Unicode's Final_Sigma condition, as CPython applies it).
    static func lowerPython(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        for i in 0..<t.count {
            let c = t[i]
            if c.value < 0x80 {
                out.append(c.value >= 0x41 && c.value <= 0x5a ? Unicode.Scalar(c.value + 32)! : c)
            } else if c.value == 0x03a3 {
                out.append(isFinalSigma(t, i) ? "\u{03C2}" : "\u{03C3}")
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    private static func isFinalSigma(_ t: Scalars, _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && t[j].properties.isCaseIgnorable { j -= 1 }
        var isFinal = j >= 0 && t[j].properties.isCased
        if isFinal && i + 1 < t.count {
            j = i + 1
            while j < t.count && t[j].properties.isCaseIgnorable { j += 1 }
            isFinal = j == t.count || !t[j].properties.isCased
        }
        return isFinal
    }

    // MARK: ftfy subset

    static func fixText(_ text: Scalars) -> Scalars {
        let unescape = !text.contains { $0 == "<" }              // ftfy's unescape_html="auto"
        var t = text
        for _ in 0..<100 {
            let orig = t
            if unescape { t = unescapeEntities(t, ftfy: true) }
            t = fixC1Controls(t)
            t = fixLigatures(t)
            t = fixCharacterWidth(t)
            t = uncurlQuotes(t)
            t = fixLineBreaks(t)
            t = removeTerminalEscapes(t)
            t = removeControlChars(t)
            t = nfc(t)
            if t == orig { return t }                   // code point equality, not canonical equivalence
        }
        return t
    }

    static func nfc(_ t: Scalars) -> Scalars {
        return Array(string(t).precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    static func nfkc(_ t: Scalars) -> Scalars {
        return Array(string(t).precomposedStringWithCompatibilityMapping.unicodeScalars)
    }

    /// Windows-1252 characters for bytes 0x80-0x9F (undefined ones keep their code point, as ftfy's sloppy codec).
    static let cp1252: [UInt32] = [
        0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
        0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
        0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
        0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
    ]

    static func fixC1Controls(_ t: Scalars) -> Scalars {
        return t.map { c in
            (c.value >= 0x80 && c.value <= 0x9f) ? Unicode.Scalar(cp1252[Int(c.value - 0x80)])! : c
        }
    }

    static let ligatures: [UInt32: String] = [
        0x0132: "IJ", 0x0133: "ij", 0x0149: "\u{02BC}n", 0x01F1: "DZ", 0x01F2: "Dz", 0x01F3: "dz",
        0x01C4: "D\u{017D}", 0x01C5: "D\u{017E}", 0x01C6: "d\u{017E}", 0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj",
        0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi",
        0xFB04: "ffl", 0xFB05: "\u{017F}t", 0xFB06: "st",
    ]

    static func fixLigatures(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        for c in t {
            if let r = ligatures[c.value] { out.append(contentsOf: r.unicodeScalars) } else { out.append(c) }
        }
        return out
    }

    /// U+3000 -> space; U+FF01..U+FFEF -> their NFKC form (ftfy's width map).
    static func fixCharacterWidth(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        for c in t {
            if c.value == 0x3000 {
                out.append(" ")
            } else if c.value >= 0xff01 && c.value < 0xfff0 {
                out.append(contentsOf: nfkc([c]))
            } else {
                out.append(c)
            }
        }
        return out
    }

    static func uncurlQuotes(_ t: Scalars) -> Scalars {
        return t.map { (c: Unicode.Scalar) -> Unicode.Scalar in
            if c.value == 0x02bc || (c.value >= 0x2018 && c.value <= 0x201b) { return "'" }
            if c.value >= 0x201c && c.value <= 0x201f { return "\"" }
            return c
        }
    }

    /// CRLF, CR, U+2028, U+2029, U+0085 -> LF.
    static func fixLineBreaks(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        var i = 0
        while i < t.count {
            let c = t[i].value
            if c == 0x0d && i + 1 < t.count && t[i + 1].value == 0x0a {
                out.append("\n")
                i += 2
                continue
            }
            out.append(c == 0x0d || c == 0x2028 || c == 0x2029 || c == 0x85 ? "\n" : t[i])
            i += 1
        }
        return out
    }

    /// ANSI escapes `ESC [ (digits|;)* letter`.
    static func removeTerminalEscapes(_ t: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(t.count)
        var i = 0
        while i < t.count {
            if t[i].value == 0x1b && i + 1 < t.count && t[i + 1] == "[" {
                var j = i + 2
                while j < t.count && (isAsciiDigit(t[j]) || t[j] == ";") { j += 1 }
                if j < t.count && isAsciiLetter(t[j]) {
                    i = j + 1
                    continue
                }
            }
            out.append(t[i])
            i += 1
        }
        return out
    }

    static func removeControlChars(_ t: Scalars) -> Scalars {
        return t.filter { s in
            let c = s.value
            let drop = c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f
                || (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc)
            return !drop
        }
    }

    // MARK: HTML entities

    static let entities: [String: String] = {
        var e: [String: String] = [
            "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "AMP": "&", "LT": "<", "GT": ">",
            "QUOT": "\"", "nbsp": "\u{00A0}", "copy": "\u{00A9}", "reg": "\u{00AE}", "trade": "\u{2122}",
            "hellip": "\u{2026}", "mdash": "\u{2014}", "ndash": "\u{2013}", "lsquo": "\u{2018}",
            "rsquo": "\u{2019}", "ldquo": "\u{201C}", "rdquo": "\u{201D}", "laquo": "\u{00AB}",
            "raquo": "\u{00BB}", "bull": "\u{2022}", "middot": "\u{00B7}", "deg": "\u{00B0}", "euro": "\u{20AC}",
            "pound": "\u{00A3}", "yen": "\u{00A5}", "cent": "\u{00A2}", "sect": "\u{00A7}", "para": "\u{00B6}",
            "times": "\u{00D7}", "divide": "\u{00F7}", "plusmn": "\u{00B1}", "frac12": "\u{00BD}",
            "frac14": "\u{00BC}", "frac34": "\u{00BE}", "iexcl": "\u{00A1}", "iquest": "\u{00BF}",
            "szlig": "\u{00DF}", "ntilde": "\u{00F1}", "Ntilde": "\u{00D1}", "ccedil": "\u{00E7}",
            "Ccedil": "\u{00C7}", "aring": "\u{00E5}", "Aring": "\u{00C5}", "oslash": "\u{00F8}",
            "Oslash": "\u{00D8}", "aelig": "\u{00E6}", "AElig": "\u{00C6}",
        ]
        let marks: [(String, String)] = [("acute", "\u{0301}"), ("grave", "\u{0300}"), ("circ", "\u{0302}"),
                                         ("uml", "\u{0308}")]
        for v in ["a", "e", "i", "o", "u", "A", "E", "I", "O", "U"] {
            for (name, mark) in marks {
                e[v + name] = (v + mark).precomposedStringWithCanonicalMapping
            }
        }
        return e
    }()

    /// Names Python's html.unescape also accepts without the semicolon (a subset of HTML5's legacy names).
    static let legacy = ["amp", "lt", "gt", "quot", "nbsp", "copy", "reg", "AMP", "LT", "GT", "QUOT"]

    /// Python's `html.unescape` (named entities limited to the table above).
    public static func htmlUnescape(_ t: String) -> String {
        return string(htmlUnescape(Array(t.unicodeScalars)))
    }

    static func htmlUnescape(_ t: Scalars) -> Scalars {
        return unescapeEntities(t, ftfy: false)
    }

    /// One pass over the entity references of `t`. `ftfy`: only `&name;` and `&#..;` with the semicolon
    /// (ftfy's rule); otherwise Python's html.unescape rules (numeric semicolon optional, legacy names
    /// without it).
    static func unescapeEntities(_ t: Scalars, ftfy: Bool) -> Scalars {
        guard t.contains(where: { $0 == "&" }) else { return t }
        var out = Scalars()
        out.reserveCapacity(t.count)
        var k = 0
        while k < t.count {
            if t[k] != "&" {
                out.append(t[k])
                k += 1
                continue
            }
            if let hit = ftfy ? ftfyEntity(t, at: k) : pyEntity(t, at: k) {
                out.append(contentsOf: hit.replacement)
                k += hit.consumed
            } else {
                out.append("&")
                k += 1
            }
        }
        return out
    }

    /// ftfy's `&#?[0-9A-Za-z]{1,24};`: the replacement and the number of scalars it replaces.
    private static func ftfyEntity(_ t: Scalars, at: Int) -> (replacement: Scalars, consumed: Int)? {
        var k = at + 1
        let hash = k < t.count && t[k] == "#"
        if hash { k += 1 }
        let start = k
        while k < t.count && k - start < 25 && isAsciiAlnum(t[k]) { k += 1 }
        if k == start || k - start > 24 || k >= t.count || t[k] != ";" { return nil }
        let consumed = k + 1 - at
        if !hash {
            guard let r = entities[string(Array(t[start..<k]))] else { return nil }
            return (Array(r.unicodeScalars), consumed)
        }
        let ref = Array(t[at...k])
        guard let hit = pyEntity(ref, at: 0), hit.consumed == consumed else { return nil }
        return (hit.replacement, consumed)
    }

    /// Python's html.unescape rule at `&`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`.
    private static func pyEntity(_ t: Scalars, at: Int) -> (replacement: Scalars, consumed: Int)? {
        var k = at + 1
        if k < t.count && t[k] == "#" {
            k += 1
            let hex = k < t.count && (t[k] == "x" || t[k] == "X")
            if hex { k += 1 }
            let start = k
            while k < t.count && (hex ? hexValue(t[k]) != nil : isAsciiDigit(t[k])) { k += 1 }
            if k == start { return nil }
            var num: UInt32 = 0                          // saturates above the Unicode range, as Python's int
            for d in t[start..<k] {
                num = min(num * (hex ? 16 : 10) + hexValue(d)!, 0x110000)
            }
            if k < t.count && t[k] == ";" { k += 1 }
            return (charRef(num), k - at)
        }
        let start = k
        let stops: Set<UInt32> = [0x09, 0x0a, 0x0c, 0x20, 0x3c, 0x26, 0x23, 0x3b]    // \t \n \f space < & # ;
        while k < t.count && k - start < 32 && !stops.contains(t[k].value) { k += 1 }
        if k == start { return nil }
        let name = string(Array(t[start..<k]))
        if k < t.count && t[k] == ";", let r = entities[name] {
            return (Array(r.unicodeScalars), k + 1 - at)
        }
        // the longest legacy name that prefixes it (Python keeps the rest of the match as text)
        var best: String? = nil
        for l in legacy where name.unicodeScalars.starts(with: l.unicodeScalars) {
            if best == nil || l.unicodeScalars.count > best!.unicodeScalars.count { best = l }
        }
        guard let b = best, let r = entities[b] else { return nil }
        return (Array(r.unicodeScalars), 1 + b.unicodeScalars.count)
    }

    /// Python's `html._replace_charref` for a numeric reference.
    static func charRef(_ num: UInt32) -> Scalars {
        if num == 0x00 { return ["\u{FFFD}"] }
        if num == 0x0d { return ["\r"] }
        if num >= 0x80 && num <= 0x9f { return [Unicode.Scalar(cp1252[Int(num - 0x80)])!] }
        if (num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff { return ["\u{FFFD}"] }
        let invalid = (num >= 0x1 && num <= 0x8) || (num >= 0xe && num <= 0x1f) || (num >= 0x7f && num <= 0x9f)
            || (num >= 0xfdd0 && num <= 0xfdef) || num == 0xb || (num & 0xfffe) == 0xfffe
        if invalid { return [] }
        guard let s = Unicode.Scalar(num) else { return ["\u{FFFD}"] }
        return [s]
    }

    static func isAsciiDigit(_ s: Unicode.Scalar) -> Bool { s.value >= 0x30 && s.value <= 0x39 }

    static func isAsciiLetter(_ s: Unicode.Scalar) -> Bool {
        (s.value >= 0x41 && s.value <= 0x5a) || (s.value >= 0x61 && s.value <= 0x7a)
    }

    static func isAsciiAlnum(_ s: Unicode.Scalar) -> Bool { isAsciiDigit(s) || isAsciiLetter(s) }

    /// The value of an ASCII hex digit (decimal digits included), else nil.
    static func hexValue(_ s: Unicode.Scalar) -> UInt32? {
        switch s.value {
        case 0x30...0x39: return s.value - 0x30
        case 0x41...0x46: return s.value - 0x41 + 10
        case 0x61...0x66: return s.value - 0x61 + 10
        default: return nil
        }
    }
}
