import MemoryModel

// Text and binary formatting on a ProcWriter: the model's seq_printf(),
// seq_put_decimal_ull_width(), seq_setwidth()/seq_pad() and seq_path().

extension ProcWriter {
    /// Writes one ASCII byte.
    @inlinable
    mutating func put(_ c: UInt8) { write(byte: c) }

    /// Writes `value` in lowercase hex, zero-padded to at least `width` digits
    /// (`%0*lx`).
    @inlinable
    mutating func writeHex(_ value: UInt64, width: Int) {
        var digits: (UInt64, UInt64) = (0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            var v = value
            repeat {
                let d = UInt8(truncatingIfNeeded: v & 15)
                buf[15 - n] = d < 10 ? 48 + d : 87 + d
                v >>= 4
                n += 1
            } while v != 0
            while n < width && n < 16 {
                buf[15 - n] = 48
                n += 1
            }
        }
        for _ in 0..<(width - n > 0 ? width - n : 0) { put(48) }   // widths beyond 16
        withUnsafeBytes(of: &digits) { write(UnsafeRawBufferPointer(rebasing: $0[(16 - n)...])) }
    }

    /// Writes `value` in decimal, right-aligned in `width` columns (`%*lu`).
    @inlinable
    mutating func writeDecimal(_ value: UInt64, width: Int = 0) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            var v = value
            repeat {
                buf[23 - n] = 48 + UInt8(truncatingIfNeeded: v % 10)
                v /= 10
                n += 1
            } while v != 0
        }
        if width > n { for _ in 0..<(width - n) { put(32) } }
        withUnsafeBytes(of: &digits) { write(UnsafeRawBufferPointer(rebasing: $0[(24 - n)...])) }
    }

    /// `seq_put_decimal_ull_width(m, label, value, width)`.
    @inlinable
    mutating func writeField(_ label: StaticString, _ value: UInt64, width: Int = 8) {
        write(UnsafeRawBufferPointer(start: label.utf8Start, count: label.utf8CodeUnitCount))
        writeDecimal(value, width: width)
    }

    @inlinable
    mutating func write(_ s: StaticString) {
        write(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Writes `s`, escaping every byte listed in `escape` as a backslash and
    /// three octal digits (`mangle_path()`, as `seq_path()` does).
    mutating func writeEscaped(_ s: String, escape: [UInt8]) {
        for b in s.utf8 {
            if escape.contains(b) {
                put(92)
                put(48 + (b >> 6))
                put(48 + ((b >> 3) & 7))
                put(48 + (b & 7))
            } else {
                put(b)
            }
        }
    }

    /// Writes a 64-bit word little-endian (pagemap entries).
    @inlinable
    mutating func writeLE64(_ word: UInt64) {
        writeLE64(count: 1) { _ in word }
    }
}

/// The maps header line (`show_map_vma()` / `show_vma_header_prefix()`):
/// built in a small byte array because `seq_pad()` pads relative to where
/// the line started.
struct HeaderLine {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(128) }

    mutating func hex(_ v: UInt64, width: Int) {
        let s = String(v, radix: 16)
        if s.utf8.count < width { bytes.append(contentsOf: repeatElement(48, count: width - s.utf8.count)) }
        bytes.append(contentsOf: s.utf8)
    }

    mutating func text(_ s: String) { bytes.append(contentsOf: s.utf8) }

    /// `seq_setwidth(m, 25 + 6 * sizeof(void *) - 1)` then `seq_pad(m, ' ')`:
    /// spaces up to column 72, then one more.
    mutating func pad() {
        let width = 25 + 6 * 8 - 1
        if bytes.count < width { bytes.append(contentsOf: repeatElement(32, count: width - bytes.count)) }
        bytes.append(32)
    }

    /// `start-end perms offset major:minor inode `.
    static func prefix(start: UInt64, end: UInt64, perms: String, offset: UInt64, device: DeviceNumber,
                       inode: UInt64) -> HeaderLine {
        var h = HeaderLine()
        h.hex(start, width: 8)
        h.bytes.append(45)
        h.hex(end, width: 8)
        h.bytes.append(32)
        h.text(perms)
        h.bytes.append(32)
        h.hex(offset, width: 8)
        h.bytes.append(32)
        h.hex(UInt64(device.major), width: 2)
        h.bytes.append(58)
        h.hex(UInt64(device.minor), width: 2)
        h.bytes.append(32)
        h.text(String(inode))
        h.bytes.append(32)
        return h
    }
}

extension ProcWriter {
    mutating func write(_ line: HeaderLine) {
        line.bytes.withUnsafeBytes { write($0) }
    }
}
