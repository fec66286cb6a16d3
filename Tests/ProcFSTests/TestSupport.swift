import MemoryModel
import PageWalk
@testable import ProcFS

let page: UInt64 = 4096
let mb2: UInt64 = 2 << 20
