import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct KnobJournalTests {
    @Test func theFirstOriginalIsKeptAndRestored() throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("knob", "5\n")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("7", to: knob, owner: "a")
        try journal.write("9", to: knob, owner: "a")
        #expect(try readFile(knob) == "9")
        #expect(journal.original(of: knob) == "5", "the value before the first write, trimmed")
        #expect(journal.restore(owner: "a").isEmpty)
        #expect(try readFile(knob) == "5")
        #expect(journal.entries().isEmpty, "a restored knob is forgotten")
    }

    @Test func restoreIsPerOwnerOrPerPath() throws {
        let scratch = try ScratchDirectory()
        let a = try scratch.write("a", "1"), b = try scratch.write("b", "2"), c = try scratch.write("c", "3")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("10", to: a, owner: "p")
        try journal.write("20", to: b, owner: "q")
        try journal.write("30", to: c, owner: "q")
        journal.restore(owner: "p")
        #expect(try readFile(a) == "1" && readFile(b) == "20")
        journal.restore(paths: [c])
        #expect(try readFile(c) == "3" && readFile(b) == "20")
        #expect(journal.entries().map(\.path) == [b])
    }

    @Test func aCustomOriginalReaderAndAVanishedKnob() throws {
        let scratch = try ScratchDirectory()
        let control = try scratch.write("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("1", to: control, owner: "p") { $0.contains("oom_kill_disable 1") ? "1" : "0" }
        #expect(journal.original(of: control) == "0")
        unlink(control)
        #expect(journal.restore().isEmpty, "a knob whose file is gone counts as restored")
        #expect(journal.entries().isEmpty)
    }

    @Test func writingAMissingKnobNamesIt() throws {
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        #expect {
            try journal.write("1", to: "/nonexistent/knob", owner: "p")
        } throws: { error in
            "\(error)".contains("/nonexistent/knob")
        }
        #expect(journal.entries().isEmpty, "nothing is journaled for a knob that could not be read")
    }
}

@Suite struct PolicySetTests {
    @Test func parsesEntriesWithOptionalFields() throws {
        let set = try PolicySet.parse(toml: """
            [[policy]]
            name = "oom_largest"
            scope = "system"
            mode = "observe"
            [[policy]]
            name = "oom_growth"
            scope = "workloads/batch"
            set = { window_ms = 500 }
            """, path: "default.toml")
        #expect(set.entries.count == 2)
        #expect(set.entries[0] == PolicySet.Entry(name: "oom_largest", scope: "system", mode: .observe))
        #expect(set.entries[1].scope == "workloads/batch" && set.entries[1].mode == nil)
        #expect(set.entries[1].set.map(\.key) == ["window_ms"] && set.entries[1].set.map(\.value) == ["500"])
    }

    @Test func anEmptyFileIsAnEmptySet() throws {
        #expect(try PolicySet.parse(toml: "# nothing\n", path: "x.toml").entries.isEmpty)
    }

    @Test func mistakesNameTheEntryAndKey() throws {
        for (text, key) in [("[[policy]]\nname = \"a\"\nmode = \"loud\"\n", "policy[0].mode"),
                            ("[[policy]]\nname = \"Bad Name\"\n", "policy[0].name"),
                            ("[[policy]]\nname = \"a\"\ncolour = 1\n", "policy[0].colour"),
                            ("policies = 1\n", "policies")] {
            #expect { try PolicySet.parse(toml: text, path: "x.toml") } throws: { error in
                (error as? ManifestError)?.key == key
            }
        }
    }

    @Test func theInTreeDefaultSetIsValidAndSafe() throws {
        let set = try PolicySet.load(path: TestPaths.policies + "/default.toml")
        #expect(!set.entries.isEmpty)
        #expect(set.entries.allSatisfy { $0.mode == .observe }, "the default set never kills")
    }
}

@Suite struct TriggerManifestTests {
    func manifest(_ trigger: String) throws -> Manifest {
        try Manifest.parse(toml: """
            name = "t"
            kind = "oom"
            object = "o.bpf.o"
            description = "d"
            [trigger]
            \(trigger)
            """, path: "t.toml")
    }

    @Test func readsEveryKey() throws {
        let m = try manifest("mem_available_percent = 5\nswap_free_percent = 2.5\npsi = \"full 500000 2000000\"\nmemcg_headroom_percent = 3\nsteer_oom_score_adj = false")
        #expect(m.trigger == TriggerSettings(memAvailablePercent: 5, swapFreePercent: 2.5,
                                             psi: PSITriggerSpec(full: true, stallMicroseconds: 500_000, windowMicroseconds: 2_000_000),
                                             memcgHeadroomPercent: 3, steerOOMScoreAdj: false))
    }

    @Test func refusesBadValuesNamingTheKey() throws {
        for (text, key) in [("mem_available_percent = 150", "trigger.mem_available_percent"),
                            ("psi = \"sometimes 1 2\"", "trigger.psi"),
                            ("psi = \"some 3000000 2000000\"", "trigger.psi"),
                            ("steer_oom_score_adj = 1", "trigger.steer_oom_score_adj"),
                            ("poll_ms = 10", "trigger.poll_ms")] {
            #expect { try manifest(text) } throws: { error in
                (error as? ManifestError)?.key == key
            }
        }
    }
}
