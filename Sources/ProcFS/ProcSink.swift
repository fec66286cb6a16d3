#if canImport(Glibc)
import Glibc
#endif

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

/// A page-sized output buffer in front of a sink (`struct seq_file`'s
/// buffer): text is formatted into it and flushed when it fills.
public struct ProcWriter<Sink: ProcSink> {
    public var sink: Sink
    @usableFromInline var buffer: [UInt8]
    @usableFromInline let capacity: Int

    public init(_ sink: Sink, capacity: Int = 4096) {
        self.sink = sink
        self.capacity = capacity
        buffer = []
        buffer.reserveCapacity(capacity)
    }

    @inlinable
    public mutating func write(_ s: String) {
        var s = s
        s.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    @inlinable
    public mutating func write(_ bytes: UnsafeRawBufferPointer) {
        if buffer.count + bytes.count > capacity { flush() }
        if bytes.count >= capacity { sink.write(bytes); return }
        buffer.append(contentsOf: bytes)
    }

    @inlinable
    public mutating func write(byte: UInt8) {
        if buffer.count == capacity { flush() }
        buffer.append(byte)
    }

    /// Hands what is buffered to the sink.
    public mutating func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { sink.write($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and returns the sink.
    public mutating func finish() -> Sink {
        flush()
        return sink
    }
}
