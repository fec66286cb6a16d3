import Foundation
import TestKit
import Testing

/// `ptwalk --apply OP`: ops of the scenario format applied to the process
/// before the command runs, through the range walker or its callback twin.
@Suite("ptwalk --apply", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct ApplyOptionTests {
    static func field(_ text: String, _ name: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    @Test func clearRefsOnBothWalkersAndOnASnapshot() throws {
        let before = try Ptwalk.run(["smaps_rollup"])
        #expect(before.status == 0 && (Self.field(before.text, "Referenced") ?? 0) > 0)
        var outputs: [String] = []
        for walker in ["range", "callback"] {
            let r = try Ptwalk.run(["smaps", "--walker", walker, "--apply", #"{"op":"clear_refs","kind":"young"}"#])
            #expect(r.status == 0, "\(r.stderr)")
            let referenced = r.text.split(separator: "\n").filter { $0.hasPrefix("Referenced:") }
            #expect(!referenced.isEmpty && referenced.allSatisfy { $0.hasSuffix(" 0 kB") })
            outputs.append(r.text)
        }
        #expect(outputs[0] == outputs[1])
        let fixture = try #require(Ptwalk.pythonIdle)
        let snap = try Ptwalk.run(["smaps_rollup", "--snapshot", fixture,
                                   "--apply", #"{"op":"clear_refs","kind":"young"}"#, "--quiet"])
        #expect(snap.status == 0 && Self.field(snap.text, "Referenced") == 0, "\(snap.stderr)")
    }

    @Test func badOpsAreUsageErrorsNamingTheField() throws {
        let bad = try Ptwalk.run(["smaps", "--apply", #"{"op":"clear_refs","kind":"bogus"}"#])
        #expect(bad.status == 2 && bad.stdout.isEmpty)
        #expect(bad.stderr.contains("--apply[0].kind: unknown value \"bogus\""))
        let json = try Ptwalk.run(["smaps", "--apply", "{"])
        #expect(json.status == 2 && json.stdout.isEmpty)
        let fork = try Ptwalk.run(["smaps", "--apply", #"{"op":"fork","child":9}"#])
        #expect(fork.status == 2 && fork.stderr.contains("fork cannot be applied"))
        // A well-formed op the model refuses: unusable input, nothing on stdout.
        let unmapped = try Ptwalk.run(["smaps", "--apply", #"{"op":"mlock","start":"0x1000","size":4096}"#])
        #expect(unmapped.status == 1 && unmapped.stdout.isEmpty && unmapped.stderr.contains("--apply"))
    }
}
