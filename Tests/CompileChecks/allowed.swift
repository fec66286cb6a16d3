// Must compile: the same updates made inside the body, and the entry's
// value (a copyable WalkEntry) kept.
import MemoryModel
import PageWalk

func allowed(_ mm: AddressSpace) throws -> [WalkEntry] {
    var seen: [WalkEntry] = []
    try mm.withUpdateWalk(0..<4096) { (walk) throws(PageWalkError) in
        try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
            try e.testAndClearYoung()
            seen.append(e.entry)
            return .unlockAndRetry { () throws(PageWalkError) in }
        }
    }
    return seen
}
