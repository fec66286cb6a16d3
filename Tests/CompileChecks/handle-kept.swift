// Must not compile: an update walk's entry handle kept past the loop body
// (stored in a variable outside it).
import MemoryModel
import PageWalk

func keep(_ mm: AddressSpace) throws {
    var kept: UpdateEntry? = nil
    try mm.withUpdateWalk(0..<4096) { (walk) throws(PageWalkError) in
        try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
            kept = e
            return .next
        }
    }
    _ = kept
}
