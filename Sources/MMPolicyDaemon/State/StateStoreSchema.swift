import GRDB

extension StateStore {
    /// The schema. Migrations are append-only: never edit one that has shipped.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "desired_policy") { t in
                t.primaryKey("name", .text)
                t.column("source", .text).notNull()
                t.column("scope", .text).notNull()
                t.column("mode", .text).notNull()
                t.column("overrides", .text).notNull()  // JSON array of {key, value}
                t.column("added_ns", .integer).notNull()
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time_ns", .integer).notNull()
                t.column("type", .text).notNull()
                t.column("policy", .text)
                t.column("summary", .text).notNull()
                t.column("decision", .text)  // JSON DecisionRecord
                // Copied out of `decision` so counting needs no JSON parsing.
                t.column("decision_outcome", .text)
                t.column("agreement", .integer)  // 1/0 for observed decisions with a kernel victim, else NULL
            }
            try db.create(index: "event_policy_time", on: "event", columns: ["policy", "time_ns"])
            try db.create(index: "event_time", on: "event", columns: ["time_ns"])
            try db.create(table: "knob_journal") { t in
                t.primaryKey("path", .text)
                t.column("original", .text).notNull()
                t.column("owner", .text).notNull()
                t.column("recorded_ns", .integer).notNull()
            }
        }
        migrator.registerMigration("v2: watchdog exits") { db in
            try db.alter(table: "event") { t in
                t.add(column: "exit", .text)  // JSON PolicyExit, for `exit` events
            }
        }
        migrator.registerMigration("v3: decision envelope") { db in
            try LegacyDecisions.migrate(db)
        }
        return migrator
    }()
}
