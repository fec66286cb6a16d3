// ptwalk: the command-line face of PageWalk. It builds processes from a
// scenario, a snapshot or the embedded default, and prints what the model's
// /proc producers and walkers see (see `ptwalk --help`, docs/PTWALK.md).

#if canImport(Glibc)
import Glibc
#endif

exit(PTWalk.run(Array(CommandLine.arguments.dropFirst())))
