#if canImport(Glibc)
import Glibc
#endif
import MemoryModel

/// Where a producer's output goes, chunk by chunk: the model's `seq_file`
/// reader side. Producers never build their whole text in memory; they
/// write through a `ProcWriter`, which hands the sink page-sized chunks.
public protocol ProcSink {
    mutating func write(_ chunk: UnsafeRawBufferPointer)
}

/// Collects the output in memory (tests, comparisons).
public struct ByteCollector: ProcSink {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func write(_ chunk: UnsafeRawBufferPointer) { bytes.append(contentsOf: chunk) }
    /// The output as UTF-8 text.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Writes the output to a file descriptor (stdout for the CLI).
public struct FileDescriptorSink: ProcSink {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public mutating func write(_ chunk: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < chunk.count {
            let n = Glibc.write(fd, chunk.baseAddress! + offset, chunk.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

/// Discards the output, counting bytes (benchmarks).
public struct CountingSink: ProcSink {
    public var count = 0
    public init() {}
    public mutating func write(_ chunk: UnsafeRawBufferPointer) { count += chunk.count }
}

/// The bytes of a `ProcWriter`'s buffer, freed with the last writer.
@usableFromInline
final class ProcBuffer {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline init(capacity: Int) { base = .allocate(byteCount: capacity, alignment: 16) }
    deinit { base.deallocate() }
}

/// A page-sized output buffer in front of a sink (`struct seq_file`'s
/// buffer): text is formatted into it and flushed when it fills.
///
/// The buffer is allocated once at its full size and filled up to `used`,
/// so a write is a copy into place, with no per-byte append. A writer is
/// used in place (`inout`), as a `seq_file` is: copies of one share its
/// buffer.
public struct ProcWriter<Sink: ProcSink> {
    public var sink: Sink
    @usableFromInline let storage: ProcBuffer
    /// `storage.base`, read without going through the object.
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline var used = 0
    @usableFromInline let capacity: Int

    public init(_ sink: Sink, capacity: Int = Geometry.pageBytes) {
        self.sink = sink
        self.capacity = Swift.max(capacity, 1)
        storage = ProcBuffer(capacity: self.capacity)
        base = storage.base
    }

    @inlinable
    public mutating func write(_ s: String) {
        var s = s
        s.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    @inlinable
    public mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if used &+ bytes.count > capacity { flush() }
        if bytes.count >= capacity { sink.write(bytes); return }
        (base + used).copyMemory(from: source, byteCount: bytes.count)
        used &+= bytes.count
    }

    @inlinable
    public mutating func write(byte: UInt8) {
        if used == capacity { flush() }
        base.storeBytes(of: byte, toByteOffset: used, as: UInt8.self)
        used &+= 1
    }

    /// Writes `count` little-endian 64-bit words, the `k`th being `word(k)`
    /// (pagemap entries: one per page, so a run is written in place, a
    /// buffer's worth at a time).
    @inlinable @inline(always)
    mutating func writeLE64(count: Int, _ word: (Int) -> UInt64) {
        // One page's word (order-0 folios): no run bookkeeping.
        if count == 1 && used &+ 8 <= capacity {
            base.storeBytes(of: word(0).littleEndian, toByteOffset: used, as: UInt64.self)
            used &+= 8
            return
        }
        guard capacity >= 8 else {
            for k in 0..<count { withUnsafeBytes(of: word(k).littleEndian) { write($0) } }
            return
        }
        var k = 0
        while k < count {
            if used &+ 8 > capacity { flush() }
            let n = Swift.min(count &- k, (capacity &- used) >> 3)
            let out = base + used
            for i in 0..<n {
                out.storeBytes(of: word(k &+ i).littleEndian, toByteOffset: i &<< 3, as: UInt64.self)
            }
            used &+= n &<< 3
            k &+= n
        }
    }

    /// Hands what is buffered to the sink.
    public mutating func flush() {
        guard used > 0 else { return }
        sink.write(UnsafeRawBufferPointer(start: base, count: used))
        used = 0
    }

    /// Hands everything `self` holds to `other` and empties `self`: a
    /// producer that fills a buffer under locks copies it out once they are
    /// dropped (what it could not buffer went to its collector first).
    mutating func moveBuffered<T>(into other: inout ProcWriter<T>) where Sink == ByteCollector {
        if !sink.bytes.isEmpty {
            sink.bytes.withUnsafeBytes { other.write($0) }
            sink.bytes.removeAll(keepingCapacity: true)
        }
        other.write(UnsafeRawBufferPointer(start: base, count: used))
        used = 0
    }

    /// Flushes and returns the sink.
    public mutating func finish() -> Sink {
        flush()
        return sink
    }
}
