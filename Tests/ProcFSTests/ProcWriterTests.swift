import Testing
@testable import ProcFS

@Suite struct ProcWriterTests {
    /// A sink that records the size of every chunk it is handed.
    struct ChunkSink: ProcSink {
        var chunks: [Int] = []
        var bytes: [UInt8] = []
        mutating func write(_ chunk: UnsafeRawBufferPointer) { chunks.append(chunk.count); bytes.append(contentsOf: chunk) }
    }

    @Test func writesInPageSizedChunksWithoutLosingBytes() {
        var w = ProcWriter(ChunkSink(), capacity: 16)
        for i in 0..<10 { w.write("line \(i)\n") }
        let sink = w.finish()
        #expect(String(decoding: sink.bytes, as: UTF8.self) == (0..<10).map { "line \($0)\n" }.joined())
        #expect(sink.chunks.allSatisfy { $0 <= 16 })
        #expect(sink.chunks.count >= 4)
    }

    @Test func largeWritesBypassTheBuffer() {
        var w = ProcWriter(ChunkSink(), capacity: 8)
        w.write("ab")
        w.write(String(repeating: "x", count: 20))
        let sink = w.finish()
        #expect(sink.chunks == [2, 20])
    }
}
