// One import for a client of the range walker: the address space and its
// entries (MemoryModel), the walkers (PageWalk), the /proc producers
// (ProcFS), and the two ways to get an address space without building one
// by hand: a JSON scenario (Scenario) or a snapshot captured from a live
// Linux process (KernelSnapshot).
@_exported import MemoryModel
@_exported import PageWalk
@_exported import ProcFS
@_exported import Scenario
@_exported import KernelSnapshot
