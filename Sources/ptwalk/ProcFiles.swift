// The /proc files export-proc writes besides the producers' output:
// cmdline, status, stat and meminfo, in the kernel's formats. A snapshot
// supplies cmdline, status and meminfo verbatim; what it lacks (stat, and
// everything for a scenario) is derived from the model: the sizes and RSS
// counters are the model's, the rest (times, uids, scheduling) are fixed
// plausible values.

import MemoryModel
import PageWalk

enum ProcFiles {
    /// Sizes of a process's VMAs, in kB, as /proc/PID/status groups them.
    struct VMSizes {
        var total: UInt64 = 0, locked: UInt64 = 0, data: UInt64 = 0, stack: UInt64 = 0
        var exe: UInt64 = 0, lib: UInt64 = 0
        var stackStart: UInt64 = 0, codeStart: UInt64 = 0, codeEnd: UInt64 = 0

        init(_ mm: AddressSpace) {
            // The mm's VMAs (total_vm and its parts): never the gate VMA.
            let vmas = mm.vmas
            let mainFile = vmas.first { $0.backing.file != nil }?.backing.file?.path
            for v in vmas {
                let kb = v.size >> 10
                total += kb
                if v.flags.contains(.locked) { locked += kb }
                let stackVMA = v.flags.contains(.growsDown)
                if stackVMA { stack += kb; stackStart = v.end - 8 }
                // VmData: private, writable, not stack (is_data_mapping()).
                if v.flags.contains(.write) && !v.isShared && !stackVMA { data += kb }
                // Executable, not writable, not stack (is_exec_mapping()).
                if v.flags.contains(.exec) && !v.flags.contains(.write) && !stackVMA {
                    if let path = v.backing.file?.path, path == mainFile {
                        exe += kb
                        if codeStart == 0 { codeStart = v.start }
                        codeEnd = v.end
                    } else {
                        lib += kb
                    }
                }
            }
        }
    }

    static func kbLine(_ name: String, _ kb: UInt64) -> String {
        let v = String(kb)
        return "\(name):\t" + String(repeating: " ", count: max(0, 8 - v.count)) + v + " kB\n"
    }

    /// /proc/PID/status (the fields smem and top read, in the kernel's order).
    static func status(pid: Int, ppid: Int, name: String, mm: AddressSpace) -> String {
        let c = mm.counterSnapshot
        let sizes = VMSizes(mm)
        let rss = UInt64(c.rssPages) * 4
        var s = "Name:\t\(name)\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t\(pid)\nNgid:\t0\nPid:\t\(pid)\n"
        s += "PPid:\t\(ppid)\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t \n"
        s += "NStgid:\t\(pid)\nNSpid:\t\(pid)\nNSpgid:\t\(pid)\nNSsid:\t\(pid)\nKthread:\t0\n"
        s += kbLine("VmPeak", sizes.total) + kbLine("VmSize", sizes.total) + kbLine("VmLck", sizes.locked)
        s += kbLine("VmPin", 0) + kbLine("VmHWM", UInt64(mm.hiwaterRSSPages) * 4) + kbLine("VmRSS", rss)
        s += kbLine("RssAnon", UInt64(c.anon) * 4) + kbLine("RssFile", UInt64(c.file) * 4)
        s += kbLine("RssShmem", UInt64(c.shmem) * 4)
        s += kbLine("VmData", sizes.data) + kbLine("VmStk", sizes.stack) + kbLine("VmExe", sizes.exe)
        s += kbLine("VmLib", sizes.lib) + kbLine("VmPTE", UInt64(c.pageTableBytes) >> 10)
        s += kbLine("VmSwap", UInt64(c.swapEntries) * 4)
        s += "HugetlbPages:\t" + String(repeating: " ", count: max(0, 8 - String(c.hugetlbBytes >> 10).count))
            + "\(c.hugetlbBytes >> 10) kB\n"
        s += "CoreDumping:\t0\nTHP_enabled:\t1\nThreads:\t1\n"
        return s
    }

    /// /proc/PID/stat: the 52 fields of `do_task_stat()`.
    static func stat(pid: Int, ppid: Int, name: String, mm: AddressSpace) -> String {
        let c = mm.counterSnapshot
        let sizes = VMSizes(mm)
        let comm = String(name.prefix(15))
        var f: [String] = [String(pid), "(\(comm))", "S", String(ppid), String(pid), String(pid), "0", "-1", "4194304"]
        f += ["0", "0", "0", "0"]                       // minflt cminflt majflt cmajflt
        f += ["0", "0", "0", "0"]                       // utime stime cutime cstime
        f += ["20", "0", "1", "0", "0"]                 // priority nice num_threads itrealvalue starttime
        f += [String(sizes.total << 10), String(c.rssPages), "18446744073709551615"]  // vsize rss rsslim
        f += [String(sizes.codeStart), String(sizes.codeEnd), String(sizes.stackStart)]
        f += ["0", "0", "0", "0", "0", "0", "0", "0", "0"]  // kstkesp kstkeip signal blocked sigignore sigcatch wchan nswap cnswap
        f += ["17", "0", "0", "0", "0", "0", "0"]       // exit_signal processor rt_priority policy blkio guest cguest
        f += ["0", "0", "0", "0", "0", "0", "0", "0"]   // start_data end_data start_brk arg_start arg_end env_start env_end exit_code
        precondition(f.count == 52)
        return f.joined(separator: " ") + "\n"
    }

    /// /proc/PID/cmdline: the name, NUL-terminated.
    static func cmdline(name: String) -> [UInt8] { Array(name.utf8) + [0] }

    /// /proc/meminfo for a scenario, in the kernel's order and format.
    /// MemTotal is the scenario's memory budget; AnonPages, Mapped, Shmem and
    /// AnonHugePages count distinct mapped pages (a COW-shared page once);
    /// the kernel's own use (slab, stacks) is zero.
    static func meminfo(memory: PhysicalMemory, processes: [AddressSpace]) -> String {
        var anon = Set<UInt64>(), file = Set<UInt64>(), shmem = Set<UInt64>(), thp = Set<UInt64>()
        var tables = 0, hugetlbBytes: UInt64 = 0, lockedPages = Set<UInt64>()
        for mm in processes {
            let c = mm.counterSnapshot
            tables += c.pageTableBytes
            hugetlbBytes += c.hugetlbBytes
            try? mm.withMmapReadLock { lock in
                for e in try mm.walk(0..<mm.geometry.userAddressLimit, lock: lock) {
                    guard case .folio(let f, let first, let n) = e.content, !f.isZero, !f.isHugetlb else { continue }
                    let pfns = (f.pfn + UInt64(first))..<(f.pfn + UInt64(first + n))
                    if f.isAnon {
                        anon.formUnion(pfns)
                        if f.order == 9 { thp.insert(f.pfn) }
                    } else if f.test(.swapBacked) {
                        shmem.formUnion(pfns); file.formUnion(pfns)
                    } else {
                        file.formUnion(pfns)
                    }
                    if (try? e.vma)??.flags.contains(.locked) == true { lockedPages.formUnion(pfns) }
                }
            }
        }
        let swapSlots = UInt64(memory.swap.slots)
        let total = memory.budgetBytes >> 10
        let used = min(total, memory.allocatedBytes >> 10)
        func kb(_ pages: Int) -> UInt64 { UInt64(pages) * 4 }
        func line(_ name: String, _ value: UInt64, unit: Bool = true) -> String {
            let label = name + ":"
            let v = String(value)
            let pad = max(1, 16 - label.count + 8 - v.count)
            return label + String(repeating: " ", count: pad) + v + (unit ? " kB\n" : "\n")
        }
        let cached = kb(file.count)
        var s = line("MemTotal", total) + line("MemFree", total - used) + line("MemAvailable", total - used)
        s += line("Buffers", 0) + line("Cached", cached) + line("SwapCached", 0)
        s += line("Active", 0) + line("Inactive", kb(anon.count) + cached)
        s += line("Active(anon)", 0) + line("Inactive(anon)", kb(anon.count))
        s += line("Active(file)", 0) + line("Inactive(file)", cached)
        s += line("Unevictable", kb(lockedPages.count)) + line("Mlocked", kb(lockedPages.count))
        s += line("SwapTotal", swapSlots * 4) + line("SwapFree", (swapSlots - min(swapSlots, UInt64(memory.swap.usedSlots))) * 4)
        s += line("Dirty", 0) + line("Writeback", 0)
        s += line("AnonPages", kb(anon.count)) + line("Mapped", cached) + line("Shmem", kb(shmem.count))
        s += line("KReclaimable", 0) + line("Slab", 0) + line("SReclaimable", 0) + line("SUnreclaim", 0)
        s += line("KernelStack", 0) + line("PageTables", UInt64(tables) >> 10)
        s += line("AnonHugePages", UInt64(thp.count) * 2048)
        let hugePages = hugetlbBytes >> 21
        s += line("HugePages_Total", hugePages, unit: false) + line("HugePages_Free", 0, unit: false)
        s += line("HugePages_Rsvd", 0, unit: false) + line("HugePages_Surp", 0, unit: false)
        s += line("Hugepagesize", 2048) + line("Hugetlb", hugetlbBytes >> 10)
        return s
    }
}
