// Must not compile: the update walk itself taken out of its body.
import MemoryModel
import PageWalk

func escape(_ mm: AddressSpace) throws -> UpdateWalk {
    try mm.withUpdateWalk(0..<4096) { (walk) throws(PageWalkError) -> UpdateWalk in walk }
}
