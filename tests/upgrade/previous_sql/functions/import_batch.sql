CREATE OR REPLACE FUNCTION pgjobs.import_batch(
    p_id bigint,
    p_worker text,
    p_fields text[],
    p_lines bigint[],
    p_done bigint,
    p_total bigint,
    p_checkpoint jsonb,
    p_rejects jsonb DEFAULT '[]',
    p_records text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One batch of import p_id, in the caller's transaction, which has just
-- COPYed the batch's records into pg_temp.pgjobs_import_stage
-- (pgjobs.import_prepare) and COMMITs right after: the rows, the rejects
-- and the checkpoint (p_checkpoint: where the source was read to, set by
-- the worker; plus the running counts, kept here) commit together, so a
-- crash loses the batch and its position alike, and the next owner
-- resumes from the last committed position: every record lands once.
--
-- Fenced on the claim: unless p_worker holds an unexpired lease of the
-- running job with no cancel requested, nothing is written and the result
-- is {"status": "lost"} (the caller rolls back and asks pgjobs.heartbeat,
-- which settles a cancel). A pause request does not fence: the batch
-- goes in, the job becomes `paused` with its checkpoint, and the result is
-- {"status": "paused", ...totals} (the caller commits and stops). The job row stays locked FOR UPDATE to the
-- commit: a rescue or a new claim waits for the batch and sees its
-- checkpoint.
--
-- p_lines: the source line of each staged record, in order (for reasons);
-- p_records: the source text of each staged record, in order (for the
-- rejects: a CSV record is staged as its fields, a JSONL line rewritten). Both are needed only
-- when a record is refused here, so the worker may leave them NULL: a
-- batch that then needs them rolls its rows back and returns {"status":
-- "records"}, and the worker calls again, in the same transaction, with
-- them. p_rejects: records the worker refused before staging them (wrong
-- field count, invalid UTF-8 or JSON: [{"line", "reason", "record"}]).
-- The first batch stores in the checkpoint ("mapping") where each field
-- goes (pgjobs._import_mapping); later batches must map alike
-- (pgjobs._import_insert_sql: 55000). The batch
-- goes in with one INSERT ... SELECT (pgjobs._import_insert_sql; JSONL:
-- one per set of keys, and one per record for records of one key that
-- name different sets, in line order); when that fails on a bad value or a constraint,
-- narrowed down around the records it fails at (runs of records, each one
-- INSERT in a subtransaction, in line order; below), and the records that
-- fail alone are rejected (pgjobs.import_rejects). More rejects than max_rejects: the
-- batch's rows roll back (rows of earlier batches stay), its rejects up to
-- the first beyond max_rejects (in line order) are kept, the checkpoint
-- does not move, and the result is {"status": "rejected", "error": that
-- record's line and reason, "state": its SQLSTATE, "hint"}: the caller
-- commits, writes the rejects object and fails the job (a retry resumes at
-- the checkpoint). Rejects whose bytes would take the job's kept rejects
-- past set_defaults' max_reject_bytes_per_job (else 16777216, 16 MiB;
-- not when the submitter is an administrator) fail it alike, with state
-- 22000 and an error naming the bytes and the ceiling: the batch's rejects
-- before the first that would pass it are kept, so a client's import never
-- keeps more than the ceiling. A reject's bytes are those it is kept as:
-- octet_length of its reason plus of its record (cut to 65,536
-- characters); the job's running sum is the checkpoint's "reject_bytes"
-- (moving with it, so rejects a retry forgets past the checkpoint were
-- never counted), counted once from its rows when missing (an import
-- checkpointed before it was kept). Returns {"status": "ok", "inserted", "updated",
-- "skipped", "rejected", "records"}: the job's running totals.
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_ck jsonb;
    v_max integer;
    v_rejected bigint;
    v_allowed bigint;
    v_max_bytes bigint;
    v_client_room bigint;
    v_client_bound boolean := false;
    v_bytes bigint;
    v_batch_bytes bigint := 0;
    v_first_bytes jsonb;
    v_bytes_over boolean := false;
    v_bytes_at bigint;
    v_inserted bigint := 0;
    v_updated bigint := 0;
    v_ins bigint;
    v_upd bigint;
    v_routed boolean;
    v_below bigint;
    v_staged bigint;
    v_ns bigint[];
    v_fields text[];
    v_group_ns bigint[];
    v_groups jsonb;
    v_group jsonb;
    v_sql text;
    v_n bigint;
    v_state text;
    v_msg text;
    v_line bigint;
    v_record text;
    v_worker_rejects jsonb := coalesce(p_rejects, '[]'::jsonb);
    v_sql_rejects jsonb := '[]'::jsonb;
    v_first jsonb;
    v_over boolean := false;
    v_refused boolean := false;
    v_need boolean := false;
    v_mapping jsonb := '{}'::jsonb;
    v_stage text := 'pg_temp.pgjobs_import_stage';
    v_lock_timeout text;
    v_statements jsonb := '{}'::jsonb;
    v_list bigint[];
    v_stack integer[];
    v_lo integer;
    v_hi integer;
    v_pos integer;
    v_indexed boolean := false;
    v_try text;
    v_range boolean;
    v_guess boolean;
    v_enable_sort text := current_setting('enable_sort');
    v_spos integer[];
    v_fast boolean;
    v_kept_rejects jsonb;
    v_kept_bytes bigint;
    v_out_ns bigint[];
    v_bulk text;
    v_plain boolean;
    v_early boolean;
    v_found jsonb[];
    v_worker_n integer;
    v_worker_bytes bigint;
    v_prep text;
    v_plan_mode text;
    v_unguarded text;
BEGIN
    -- The job's row, waited for at most 5 s: a client's pause or cancel of
    -- its own import left open holds it, and an importer waiting for good
    -- was lost to every other job (55P03: the worker leaves the job to a
    -- later claim). The batch's own statements wait as the session says.
    v_lock_timeout := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', '5s', true);
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id FOR UPDATE;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
    IF NOT FOUND OR v_job.kind <> 'import' OR v_job.status <> 'running'
       OR v_job.worker IS DISTINCT FROM p_worker OR v_job.lease_expires_at <= now()
       OR v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN jsonb_build_object('status', 'lost');
    END IF;
    v_reg := pgjobs._target(v_job.target);
    -- The columns the job was submitted against (its mapping names them):
    -- renamed, dropped or retyped since, the batch would go into other
    -- columns (42703/42804: the job fails for good). Held to the batch's
    -- commit, so none changes after this check.
    PERFORM pgjobs._require_same_columns(v_job);
    -- The scope column still takes the job's scope, as at the attempt's
    -- start (pgjobs._import_scope_writable, 22023): a partition generating
    -- it attached between two batches would give the rows after it the
    -- scope it computes. (A column the source names: at each statement's
    -- build, pgjobs._import_insert_sql.)
    PERFORM pgjobs._import_scope_writable(v_reg);
    -- Deferrable constraints (a foreign key, unique or exclusion constraint,
    -- a constraint trigger; INITIALLY DEFERRED or set so) are checked at the
    -- end of each statement of the batch, as the others are, not at its
    -- COMMIT: there, after this returned, a record they refuse failed the
    -- COMMIT, the whole batch with it, and the job for good, where one
    -- record a batch rejects that record and keeps the rest (h81). A record
    -- is thus checked against the rows before it, as every refusal is
    -- (docs/imports.md, "Deferrable constraints"). For the rest of the
    -- worker's transaction, which commits the batch right after.
    SET CONSTRAINTS ALL IMMEDIATE;
    v_ck := coalesce(v_job.checkpoint, '{}');
    -- A plain table with inheritance children may route its rows to them
    -- with a BEFORE INSERT trigger that inserts the row there and returns
    -- NULL (partitioning before PostgreSQL 10): the INSERT counts no row
    -- for such a record, which landed all the same. The rows inserted into
    -- the target and its children (pgjobs._inserts_below) during each
    -- statement count as inserted when they are more than the statement
    -- counted, so the check below fails only records that landed nowhere.
    -- Not added to the statement's count: a DO INSTEAD rule routing into a
    -- child makes the statement count those rows itself, and the sum
    -- counted each record twice (5 records: 10 inserted, -5 skipped), which
    -- hid records a child's trigger kept out (hV review). Never more than
    -- the statement's records: a statement writes at most one row each.
    v_routed := EXISTS (SELECT FROM pg_catalog.pg_inherits i
                         WHERE i.inhparent = v_job.target)
                AND (SELECT c.relkind FROM pg_catalog.pg_class c
                      WHERE c.oid = v_job.target) = 'r';
    v_max := coalesce((v_job.payload ->> 'max_rejects')::integer, 0);
    v_rejected := coalesce((v_ck ->> 'rejected')::bigint, 0);
    -- Rejects this batch may still take before the job fails.
    v_allowed := greatest(v_max - v_rejected, 0);
    -- The bytes of the rejects the job keeps (pgjobs.import_rejects): the
    -- checkpoint's running sum, which moves with the checkpoint only, so it
    -- counts just the rejects of committed batches (pgjobs.import_prepare
    -- forgets the others). A checkpoint from before it was kept: counted
    -- once from the rows, which are then those of committed batches.
    v_bytes := (v_ck ->> 'reject_bytes')::bigint;
    IF v_bytes IS NULL THEN
        SELECT coalesce(sum(octet_length(r.reason) + coalesce(octet_length(r.record), 0)), 0)
          INTO v_bytes
          FROM pgjobs.import_rejects r WHERE r.job_id = p_id;
    END IF;
    -- Their ceiling for a submitter who is not an administrator (max_rejects
    -- bounds their number, each up to 64 Ki characters of record plus its
    -- reason: 1000 of them could keep 256 MiB and more). Read when the
    -- batch runs, so it holds imports submitted before it was set too.
    IF NOT coalesce((SELECT pg_has_role(a.oid, 'pgjobs_admin', 'MEMBER')
                       FROM pg_catalog.pg_roles a
                      WHERE a.oid = v_job.submitted_by_oid), false) THEN
        v_max_bytes := coalesce((pgjobs._defaults() ->> 'max_reject_bytes_per_job')::bigint,
                                16777216);
        -- And the submitter's room under max_item_bytes_per_client, which
        -- its rejects count toward with its payloads, items and exclude
        -- lists (pgjobs._count_reject_bytes adds them as they are written).
        -- Past it the job fails as past max_reject_bytes_per_job, naming it.
        -- Read without a lock: every batch of a client's imports (one
        -- client role may submit for many scopes) locking the client's
        -- total until its commit ran them one at a time, with no reject
        -- written. Only a batch that writes rejects locks the total (the
        -- trigger's update). So two batches of one client writing rejects
        -- at the same moment may each use the room read before either
        -- committed: the total passes the ceiling by at most what those
        -- batches keep, each within max_reject_bytes_per_job.
        SELECT coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint,
                        1073741824)
               - coalesce((SELECT l.kept_bytes FROM pgjobs.client_room_locks l
                            WHERE l.submitter_oid = v_job.submitted_by_oid), 0)
          INTO v_client_room
         WHERE v_job.submitted_by_oid IS NOT NULL;
        IF v_bytes + greatest(coalesce(v_client_room, v_max_bytes), 0) < v_max_bytes THEN
            v_max_bytes := v_bytes + greatest(v_client_room, 0);
            v_client_bound := true;
        END IF;
    END IF;

    -- (The staging table is the session's, made by pgjobs.import_prepare:
    -- dynamic SQL, as it does not exist when this function is created.)
    -- p_lines has one line per staged record.
    IF p_lines IS NULL THEN
        EXECUTE format('SELECT count(*) FROM %s', v_stage) INTO v_staged;
    ELSE
        v_staged := cardinality(p_lines);
    END IF;

    -- The batch's rows go in inside a block, so that too many rejects can
    -- take them back out and still keep the rejects (below).
    BEGIN
        -- The batch's groups, [[fields, ns], ...] in the order they go in.
        -- CSV: the whole batch at once.
        -- JSONL: one INSERT per set of keys (a missing key takes its
        -- default), the sets in the order they are first met. Records
        -- of one key that name different sets are the exception:
        -- each goes in alone, in line order. Else {"id": 1, "name":
        -- "a"}, {"id": 1, "name": "b", "age": 3}, {"id": 1, "name":
        -- "c"} with on_duplicate update ended as line 2 said, not as
        -- the last line did, skip kept a record other than the first,
        -- and error rejected the wrong line (hX pass). A key is
        -- compared as its text, numbers by value, a key of a type
        -- other than a string type by its value's one text
        -- (pgjobs._import_key_text: '2024-01-01T00:00:00Z' and
        -- '2024-01-01 01:00:00+01' are one timestamptz key; they were
        -- two, and the later line's set could go in first), and other
        -- text without case, spaces, braces or hyphens (uuids): a spelling
        -- that compares equal when it is not only sends a record
        -- alone. Records without the key get new keys, none meeting
        -- another, when an identity or a sequence gives them; a key
        -- generated from other columns, a constant default or a BEFORE
        -- INSERT trigger's may meet: such records of several sets go in
        -- alone too (they went in by set, the later line's set first).
        -- Records of one key can name different sets only when the batch
        -- holds several: a batch of one set (a file whose records all
        -- name the same fields, the common case) is grouped without the
        -- key look, which cost about 0.9 s per 100,000 records.
        IF v_job.payload ->> 'format' = 'csv' THEN
            v_groups := CASE WHEN v_staged > 0 THEN '[[null, null]]'::jsonb ELSE '[]'::jsonb END;
        ELSE
            -- (format: the staging table, v_stage, is the session's own.)
            EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_array(g.keys, g.ns) ORDER BY g.first),
                                     ''[]'')
                       FROM (SELECT t.keys, array_agg(t.n ORDER BY t.n) AS ns, min(t.n) AS first
                               FROM (SELECT s.n,
                                            ARRAY(SELECT k FROM jsonb_object_keys(s.r::jsonb) k
                                                   ORDER BY k) AS keys
                                       FROM %s s) t
                              GROUP BY t.keys) g', v_stage) INTO v_groups;
            IF jsonb_array_length(v_groups) > 1 THEN
                EXECUTE format('WITH g0 AS (
                             SELECT s.n,
                                    ARRAY(SELECT k FROM jsonb_object_keys(j.r) k ORDER BY k)
                                        AS keys,
                                    CASE
                                      WHEN jsonb_typeof(j.r -> $1) = ''number''
                                        THEN trim_scale((j.r -> $1)::numeric)::text
                                      WHEN length(j.r ->> $1) <= 1000
                                           AND j.r ->> $1 ~ ''^\s*[+-]?[0-9]+(\.[0-9]*)?\s*$''
                                        THEN trim_scale(btrim(j.r ->> $1)::numeric)::text
                                      -- A key of a type other than a string
                                      -- type: its value''s one text, so two
                                      -- spellings of one timestamp, date,
                                      -- numeric or interval are one key.
                                      WHEN $3 THEN coalesce(
                                          pgjobs._import_key_text(j.r ->> $1, $2),
                                          lower(regexp_replace(j.r ->> $1, ''[\s{}-]'', '''',
                                                               ''g'')))
                                      ELSE lower(regexp_replace(j.r ->> $1, ''[\s{}-]'', '''',
                                                                ''g''))
                                    -- Compared under the collation of the
                                    -- key column: under a case- or accent-
                                    -- insensitive one, ''ＡＢＣ'' and
                                    -- ''abc'' are one key, which
                                    -- lower() keeps apart.
                                    END%2$s AS k
                               FROM %1$s s,
                                    LATERAL (SELECT s.r::jsonb AS r) j),
                         -- Where records of different keys may meet all the
                         -- same ($5: another unique index or exclusion
                         -- constraint), each run of consecutive records of one
                         -- set goes in apart, runs in line order (island:
                         -- the same number along a run of one set).
                         g AS (
                             SELECT g0.*,
                                    CASE WHEN $5 THEN row_number() OVER (ORDER BY g0.n)
                                                      - row_number() OVER (PARTITION BY g0.keys
                                                                           ORDER BY g0.n)
                                    END AS island
                               FROM g0),
                         -- The keys that records of different sets share.
                         shared AS (
                             SELECT d.k FROM g d WHERE d.k IS NOT NULL GROUP BY d.k
                             HAVING min(d.keys) IS DISTINCT FROM max(d.keys))
                         SELECT coalesce(jsonb_agg(jsonb_build_array(x.keys, x.ns)
                                                   ORDER BY x.first), ''[]'')
                           FROM (SELECT g.keys, array_agg(g.n ORDER BY g.n) AS ns,
                                        min(g.n) AS first
                                   FROM g LEFT JOIN shared ON shared.k = g.k
                                  GROUP BY g.keys, g.island,
                                           CASE WHEN shared.k IS NOT NULL
                                                     -- Records naming no key, of
                                                     -- several sets, when the table
                                                     -- computes their key ($4).
                                                     OR (g.k IS NULL AND $4
                                                         AND (SELECT count(DISTINCT d.keys)
                                                                FROM g d WHERE d.k IS NULL) > 1)
                                                THEN g.n END) x',
                               v_stage, pgjobs._column_collate(v_job.target, v_reg.key_column))
                   INTO v_groups
                  USING v_reg.key_column::text,
                        pgjobs._column_type(v_job.target, v_reg.key_column),
                        coalesce((SELECT t.typcategory <> 'S' FROM pg_catalog.pg_type t
                                   WHERE t.oid = pgjobs._base_type(
                                             (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                               WHERE a.attrelid = v_job.target
                                                 AND a.attname = v_reg.key_column))), false),
                        -- Whether records naming no key may still meet: a key
                        -- an identity or a sequence gives is new for each, one
                        -- generated from other columns, a constant default or
                        -- one a BEFORE INSERT row trigger of the target (or a
                        -- table under it) sets may be any record's.
                        NOT EXISTS (
                            SELECT FROM pg_catalog.pg_attribute a
                              LEFT JOIN pg_catalog.pg_attrdef d
                                ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                             WHERE a.attrelid = v_job.target AND a.attname = v_reg.key_column
                               AND (a.attidentity <> ''
                                    OR (a.attgenerated = ''
                                        AND pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                                            LIKE 'nextval(%')))
                        OR EXISTS (
                            WITH RECURSIVE tree(rel) AS (
                                SELECT v_job.target::oid
                                UNION
                                SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                                  JOIN tree ON i.inhparent = tree.rel)
                            SELECT FROM pg_catalog.pg_trigger t JOIN tree ON t.tgrelid = tree.rel
                             WHERE t.tgtype::integer & 7 = 7  -- ROW, BEFORE, INSERT
                               AND t.tgenabled <> 'D' AND NOT t.tgisinternal),
                        -- Whether records of different keys may meet: a unique
                        -- index or exclusion constraint of the target (or a
                        -- table under it) on anything but its scope and key
                        -- (an email unique per tenant, an expression, a
                        -- partial index). Their sets went in in the order each
                        -- was first met: a later line landed, an earlier one
                        -- was rejected.
                        EXISTS (
                            WITH RECURSIVE tree(rel) AS (
                                SELECT v_job.target::oid
                                UNION
                                SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                                  JOIN tree ON i.inhparent = tree.rel)
                            SELECT FROM pg_catalog.pg_index x JOIN tree ON x.indrelid = tree.rel
                             WHERE (x.indisunique OR x.indisexclusion)
                               AND (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL
                                    OR EXISTS (
                                        SELECT FROM unnest(x.indkey::int2[]) c(n)
                                          JOIN pg_catalog.pg_attribute a
                                            ON a.attrelid = x.indrelid AND a.attnum = c.n
                                         WHERE a.attname NOT IN (v_reg.scope_column,
                                                                 v_reg.key_column))));
            END IF;
        END IF;
        -- A plain table without triggers or rules, no ON CONFLICT: a record's
        -- refusal there cannot depend on the records before it (below).
        v_plain := NOT v_routed
                   AND coalesce(v_job.payload ->> 'on_duplicate', 'error') = 'error'
                   AND (SELECT c.relkind FROM pg_catalog.pg_class c
                         WHERE c.oid = v_job.target) = 'r'
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                    WHERE t.tgrelid = v_job.target AND NOT t.tgisinternal)
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite r
                                    WHERE r.ev_class = v_job.target);
        <<groups>>
        FOR v_group IN SELECT g.value FROM jsonb_array_elements(v_groups) g LOOP
            v_fields := CASE WHEN jsonb_typeof(v_group -> 0) = 'array' THEN ARRAY(
                SELECT e.v FROM jsonb_array_elements_text(v_group -> 0) WITH ORDINALITY e (v, i)
                 ORDER BY e.i) END;
            v_group_ns := CASE WHEN jsonb_typeof(v_group -> 1) = 'array' THEN ARRAY(
                SELECT e.v::bigint FROM jsonb_array_elements_text(v_group -> 1) WITH ORDINALITY e (v, i)
                 ORDER BY e.i) END;
            -- A set of keys met again in the batch (records of one key that
            -- go in alone, above) reuses its statement and mapping.
            v_sql := v_statements ->> to_jsonb(v_fields)::text;
            IF v_sql IS NULL THEN
                BEGIN
                    v_sql := pgjobs._import_insert_sql(v_job, v_reg,
                                                       coalesce(v_fields, p_fields));
                EXCEPTION WHEN invalid_parameter_value THEN
                    IF v_job.payload ->> 'format' = 'csv' THEN
                        RAISE;
                    END IF;
                    GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
                END;
                IF v_sql IS NOT NULL THEN
                    v_mapping := v_mapping
                                 || pgjobs._import_mapping(v_reg, coalesce(v_fields, p_fields));
                    IF v_fields IS NOT NULL THEN  -- (CSV: one statement a batch)
                        v_statements := v_statements
                                        || jsonb_build_object(to_jsonb(v_fields)::text, v_sql);
                    END IF;
                END IF;
            END IF;
            -- The worker sends the records' lines and texts with the batch
            -- when the batch before had records refused here (or this batch
            -- asked for them): on a plain table (v_plain) such a batch goes
            -- to the read for suspects first, not through an INSERT of the
            -- whole batch that a suspect there is sure to fail (a value that
            -- does not cast, a CHECK that is false, a NULL where NOT NULL;
            -- no trigger or rule can change the row), which read and built
            -- every record of the batch before it sorted and failed them
            -- (h75). A batch without suspects goes in whole as before.
            v_early := v_sql IS NOT NULL AND v_plain
                       AND p_lines IS NOT NULL AND p_records IS NOT NULL;
            -- A statement reading a column through its guard (a type whose
            -- input may refuse a bad value outside class 22: hstore, ltree;
            -- pgjobs._import_input_guarded) pays a subtransaction per value:
            -- the group goes in first by the plain casts (v_unguarded: the
            -- same rows from the same records), and through the guards only
            -- once that failed. A refusal of class 22 or 23 is narrowed down
            -- below with the guarded statement, as before; any other error,
            -- which a bad value of such a type raises (hstore XX000, ltree
            -- 42601) as may the table (a trigger, a CHECK's function), has
            -- the group tried again guarded, which tells the value's refusal
            -- (a rejected record) from the table's (the job fails). Errors
            -- of the server or of a lock are not tried again.
            v_unguarded := NULL;
            IF v_sql IS NOT NULL AND NOT v_early
               AND strpos(v_sql, 'pgjobs._import_') > 0
               AND (strpos(v_sql, 'pgjobs._import_input(') > 0
                    OR strpos(v_sql, 'pgjobs._import_json_input(') > 0) THEN
                v_unguarded := pgjobs._import_insert_sql(v_job, v_reg,
                                                         coalesce(v_fields, p_fields), false);
            END IF;
            IF v_unguarded IS NOT NULL THEN
                BEGIN
                    v_below := CASE WHEN v_routed THEN pgjobs._inserts_below(v_job.target) END;
                    IF left(v_unguarded, 5) = 'WITH ' THEN
                        EXECUTE v_unguarded INTO v_ins, v_upd USING v_group_ns;
                    ELSE
                        EXECUTE v_unguarded USING v_group_ns;
                        GET DIAGNOSTICS v_ins = ROW_COUNT;
                        v_upd := 0;
                    END IF;
                    IF v_routed THEN
                        v_ins := least(greatest(v_ins,
                                                pgjobs._inserts_below(v_job.target) - v_below),
                                       coalesce(cardinality(v_group_ns), v_staged) - v_upd);
                    END IF;
                    v_inserted := v_inserted + v_ins;
                    v_updated := v_updated + v_upd;
                    CONTINUE;
                EXCEPTION WHEN data_exception OR integrity_constraint_violation
                               OR cardinality_violation OR SQLSTATE '428C9' THEN
                    v_unguarded := 'refused';  -- record by record below, guarded
                WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
                    IF left(v_state, 2) IN ('08', '25', '40', '53', '55', '57', '58')
                       OR v_state IN ('XX001', 'XX002') THEN
                        RAISE;
                    END IF;
                    v_unguarded := NULL;  -- the guarded statement below, whole
                END;
            END IF;
            IF v_sql IS NOT NULL AND NOT v_early AND v_unguarded IS NULL THEN
                BEGIN
                    v_below := CASE WHEN v_routed THEN pgjobs._inserts_below(v_job.target) END;
                    IF left(v_sql, 5) = 'WITH ' THEN
                        EXECUTE v_sql INTO v_ins, v_upd USING v_group_ns;
                    ELSE  -- no DO UPDATE: the rows written were inserted
                        EXECUTE v_sql USING v_group_ns;
                        GET DIAGNOSTICS v_ins = ROW_COUNT;
                        v_upd := 0;
                    END IF;
                    IF v_routed THEN
                        v_ins := least(greatest(v_ins,
                                                pgjobs._inserts_below(v_job.target) - v_below),
                                       coalesce(cardinality(v_group_ns), v_staged) - v_upd);
                    END IF;
                    v_inserted := v_inserted + v_ins;
                    v_updated := v_updated + v_upd;
                    CONTINUE;
                EXCEPTION WHEN data_exception OR integrity_constraint_violation
                               OR cardinality_violation OR SQLSTATE '428C9' THEN
                    NULL;  -- record by record below
                END;
            END IF;
            IF p_lines IS NULL OR p_records IS NULL THEN
                -- A record is refused: its line and text are needed. Undo
                -- the batch's rows and ask the worker for them.
                v_need := true;
                RAISE EXCEPTION 'records needed' USING ERRCODE = '22000',
                    HINT = 'Rolls the batch''s rows back; handled just below.';
            END IF;
            IF v_ns IS NULL THEN
                -- Record by record: the staged rows in order (the nth has line p_lines[n]).
                EXECUTE format('SELECT array_agg(s.n ORDER BY s.n) FROM %s s', v_stage) INTO v_ns;
            END IF;
            -- Narrowed down, not record by record: a failed run of records
            -- (v_list[lo:hi], first the whole group) is split around the
            -- record it failed at, and each part goes in as one INSERT in a
            -- subtransaction: the records before it (which then go in
            -- whole), that record alone (rejected when it fails again), and
            -- the records after it (tried whole in turn). Where it failed is
            -- read from a session sequence the statement sets to each
            -- record's n as it reads it (pg_temp.pgjobs_import_at: a
            -- sequence, so the value survives the subtransaction's
            -- rollback), through an index on n (created here, dropped after)
            -- so that records are read, cast and written one after another.
            -- The position is only a guess the statements then check: a run
            -- whose guess is outside it, or whose records before the guess
            -- fail again, is split in halves instead (bisected; its halves
            -- guess again). Parts are taken left first (a stack of [lo, hi,
            -- guess?] of v_list), so rows go in and rejects are met in line
            -- order, as one record at a time did; a run that goes in as one
            -- statement is what a whole batch going in is. k bad records in
            -- a batch take about 3k statements and read each record about
            -- twice; one record at a time took a statement per record, each
            -- reading the whole stage (1% rejects: 100,000 records did not
            -- finish in 900 s).
            IF NOT v_indexed THEN
                EXECUTE format('CREATE INDEX IF NOT EXISTS pgjobs_import_stage_n ON %s (n)',
                               v_stage);
                -- (Dynamic: the session's own, which need not exist yet. Made
                -- only when missing: IF NOT EXISTS would send the worker a
                -- NOTICE on every later batch that falls back.)
                IF pg_catalog.to_regclass('pg_temp.pgjobs_import_at') IS NULL THEN
                    EXECUTE 'CREATE SEQUENCE pg_temp.pgjobs_import_at MINVALUE 0';
                END IF;
                v_indexed := true;
            END IF;
            v_list := coalesce(v_group_ns, v_ns);
            -- A run of the group's records is a range of n when the group
            -- is every staged record (CSV; JSONL of one set of keys): the
            -- statement is given the range ($1: its first and last n),
            -- which is planned in no time. Else it is given the records
            -- ($1: their n), which the planner reads one by one.
            v_range := cardinality(v_list) = cardinality(v_ns);
            v_try := replace(v_sql, 'WHERE ($1 IS NULL OR s.n = ANY ($1))',
                             CASE WHEN v_range THEN 'WHERE s.n BETWEEN $1[1] AND $1[2] '
                                  ELSE 'WHERE s.n = ANY ($1) ' END
                             || 'AND pg_catalog.setval(''pg_temp.pgjobs_import_at'', s.n) >= 0');
            -- The records the database is likely to refuse, found in one
            -- read of the run without writing (pgjobs._import_suspects: a
            -- value that does not cast, a CHECK or NOT NULL of the columns
            -- written): each is tried alone, the records between them as
            -- runs expected to go in, in line order. A suspect the database
            -- accepts goes in alone; a run that fails all the same (a
            -- refusal the read cannot see: a duplicate key, a foreign key,
            -- a trigger) is narrowed down as below. Without them each bad
            -- record cost a failed run up to it, written and rolled back,
            -- and the same records written again (1% rejects: 4.4-5.1x the
            -- import without; h66).
            v_spos := ARRAY(
                SELECT u.o::integer FROM unnest(v_list) WITH ORDINALITY u(n, o)
                  JOIN unnest(CASE WHEN v_sql IS NOT NULL
                                   THEN pgjobs._import_suspects(v_sql, v_job.target, v_list,
                                                                v_range)
                              END) x(n) ON x.n = u.n
                 ORDER BY u.o);
            IF v_early AND cardinality(v_spos) = 0 THEN
                -- No suspect: the whole group as one statement, as first
                -- (plain: no DO UPDATE, no rows routed below).
                BEGIN
                    EXECUTE v_sql USING v_group_ns;
                    GET DIAGNOSTICS v_ins = ROW_COUNT;
                    v_inserted := v_inserted + v_ins;
                    CONTINUE groups;
                EXCEPTION WHEN data_exception OR integrity_constraint_violation
                               OR cardinality_violation OR SQLSTATE '428C9' THEN
                    NULL;  -- a refusal the read cannot see: narrowed down below
                END;
            END IF;
            v_stack := '{}'::integer[];
            -- Where a record's refusal cannot depend on the records before it
            -- (a plain table without triggers or rules, no ON CONFLICT): each
            -- suspect is tried alone and undone, the ones refused are the
            -- rejects (the database's reason, as alone below), and the others
            -- go in with the rest of the run as one statement, in line order.
            -- A statement per bad record instead of two: 10% rejects took a
            -- statement per 5 records. When that statement fails all the same
            -- (a refusal the read cannot see: a duplicate key, a foreign key),
            -- or the rejects pass the job's ceilings (whose first record
            -- beyond them must be found in line order), its rejects are
            -- dropped and the run goes in as below.
            v_fast := v_sql IS NOT NULL AND cardinality(v_spos) > 0 AND v_plain;
            IF v_fast THEN
                v_kept_rejects := v_sql_rejects;
                v_kept_bytes := v_batch_bytes;
                v_out_ns := '{}'::bigint[];
                -- The rejects found, gathered in an array (appended in
                -- place) and added to v_sql_rejects once: appending each to
                -- the jsonb copied all before it, 0.3 s for a batch of 1,100
                -- rejects (h75). The worker's rejects are counted once.
                v_found := '{}'::jsonb[];
                v_worker_n := jsonb_array_length(v_worker_rejects);
                v_worker_bytes := (SELECT coalesce(sum(octet_length(w.value ->> 'reason')
                                                       + coalesce(octet_length(
                                                             left(w.value ->> 'record', 65536)),
                                                                  0)), 0)
                                     FROM jsonb_array_elements(v_worker_rejects) w);
                -- Each suspect goes through one prepared statement of the
                -- group's (its generic plan made once, then executed), not
                -- the statement's text planned anew for each: 10% refused
                -- records took 3.0x-3.5x the import without, 2.2x-2.7x
                -- so (bench/import.py, h81). Prepared here, so never one
                -- the session held before (an error between here and the
                -- DEALLOCATE below leaves it: dropped first).
                v_prep := 'pgjobs_import_try_' || md5(v_try);
                IF EXISTS (SELECT FROM pg_catalog.pg_prepared_statements p
                            WHERE p.name = v_prep) THEN
                    EXECUTE format('DEALLOCATE %I', v_prep);
                END IF;
                EXECUTE format('PREPARE %I (bigint[]) AS %s', v_prep, v_try);
                v_plan_mode := current_setting('plan_cache_mode');
                PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
                FOREACH v_lo IN ARRAY v_spos LOOP
                    v_state := NULL;
                    BEGIN
                        EXECUTE format('EXECUTE %I(%L)', v_prep,
                                       CASE WHEN v_range
                                            THEN ARRAY[v_list[v_lo], v_list[v_lo]]
                                            ELSE v_list[v_lo:v_lo] END);
                        -- Accepted: undone here, it goes in with its run.
                        RAISE EXCEPTION 'undo' USING ERRCODE = 'PJ066',
                            HINT = 'Undoes the record tried alone; handled just below.';
                    EXCEPTION WHEN SQLSTATE 'PJ066' THEN
                        NULL;
                    WHEN data_exception OR integrity_constraint_violation
                         OR cardinality_violation OR SQLSTATE '428C9' THEN
                        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                    END;
                    CONTINUE WHEN v_state IS NULL;
                    -- Tried alone, it was tried before the records ahead of
                    -- it: only a refusal of its own values (a value that
                    -- does not cast, NOT NULL, a CHECK, a generated column)
                    -- is its verdict. A foreign key, a duplicate key or an
                    -- exclusion may be met by a record before it in the
                    -- batch (a parent and its child: the child a suspect the
                    -- database accepts, such as 'ab  ' for a varchar(2),
                    -- was rejected with 23503; h78): the run goes in in line
                    -- order below.
                    IF NOT (left(v_state, 2) = '22'
                            OR v_state IN ('23502', '23514', '428C9')) THEN
                        v_fast := false;
                        EXIT;
                    END IF;
                    v_n := v_list[v_lo];
                    v_out_ns := v_out_ns || v_n;
                    v_pos := CASE WHEN v_group_ns IS NULL THEN v_lo
                                  ELSE array_position(v_ns, v_n) END;
                    v_line := p_lines[v_pos];
                    v_record := p_records[v_pos];
                    v_found := v_found || jsonb_build_object(
                        'line', coalesce(v_line, -v_n), 'reason', v_msg, 'state', v_state,
                        'record', v_record);
                    v_batch_bytes := v_batch_bytes + octet_length(v_msg)
                                     + coalesce(octet_length(left(v_record, 65536)), 0);
                    IF jsonb_array_length(v_sql_rejects) + cardinality(v_found) + v_worker_n
                       > v_allowed
                       OR v_bytes + v_batch_bytes + v_worker_bytes > v_max_bytes THEN
                        v_fast := false;
                        EXIT;
                    END IF;
                END LOOP;
                PERFORM set_config('plan_cache_mode', v_plan_mode, true);
                EXECUTE format('DEALLOCATE %I', v_prep);
                v_sql_rejects := v_sql_rejects || to_jsonb(v_found);
                IF v_fast THEN
                    BEGIN
                        -- The batch's statement as it first ran, without the
                        -- records refused ($2: a hashed <> ALL), read and
                        -- sorted as the whole batch is: not through the index
                        -- on n and the position sequence, which a record at a
                        -- time needs and which took this statement 2.7 times
                        -- as long as the batch's (h75).
                        v_bulk := replace(v_sql, 'WHERE ($1 IS NULL OR s.n = ANY ($1))',
                                          CASE WHEN v_range THEN 'WHERE s.n <> ALL ($2)'
                                               ELSE 'WHERE s.n = ANY ($1) AND s.n <> ALL ($2)'
                                          END);
                        EXECUTE v_bulk USING v_list, v_out_ns;
                        GET DIAGNOSTICS v_ins = ROW_COUNT;
                        v_inserted := v_inserted + v_ins;
                    EXCEPTION WHEN data_exception OR integrity_constraint_violation
                                   OR cardinality_violation OR SQLSTATE '428C9' THEN
                        v_fast := false;
                    END;
                END IF;
                IF NOT v_fast THEN
                    v_sql_rejects := v_kept_rejects;
                    v_batch_bytes := v_kept_bytes;
                END IF;
            END IF;
            v_hi := CASE WHEN v_fast THEN 0 ELSE cardinality(v_list) END;
            FOR v_i IN REVERSE cardinality(v_spos) .. 1 LOOP
                EXIT WHEN v_fast;
                v_pos := v_spos[v_i];
                IF v_pos < v_hi THEN
                    v_stack := v_stack || ARRAY[v_pos + 1, v_hi, 1];
                END IF;
                v_stack := v_stack || ARRAY[v_pos, v_pos, 0];
                v_hi := v_pos - 1;
            END LOOP;
            IF v_hi >= 1 THEN
                v_stack := v_stack || ARRAY[1, v_hi, 1];
            END IF;
            WHILE cardinality(v_stack) > 0 LOOP
                v_lo := v_stack[cardinality(v_stack) - 2];
                v_hi := v_stack[cardinality(v_stack) - 1];
                v_guess := v_stack[cardinality(v_stack)] = 1;
                v_stack := v_stack[1:cardinality(v_stack) - 3];
                v_state := NULL;
                IF v_sql IS NULL THEN
                    v_state := '22023';  -- v_msg: this record's keys cannot be mapped
                ELSE
                    BEGIN
                        v_below := CASE WHEN v_routed THEN pgjobs._inserts_below(v_job.target) END;
                        -- (Read in order of n from the index, not sorted
                        -- after reading them all: see above.)
                        PERFORM set_config('enable_sort', 'off', true);
                        IF left(v_try, 5) = 'WITH ' THEN
                            EXECUTE v_try INTO v_ins, v_upd
                                USING CASE WHEN v_range THEN ARRAY[v_list[v_lo], v_list[v_hi]]
                                           ELSE v_list[v_lo:v_hi] END;
                        ELSE
                            EXECUTE v_try
                                USING CASE WHEN v_range THEN ARRAY[v_list[v_lo], v_list[v_hi]]
                                           ELSE v_list[v_lo:v_hi] END;
                            GET DIAGNOSTICS v_ins = ROW_COUNT;
                            v_upd := 0;
                        END IF;
                        PERFORM set_config('enable_sort', v_enable_sort, true);
                        IF v_routed THEN
                            v_ins := least(greatest(v_ins,
                                                    pgjobs._inserts_below(v_job.target)
                                                    - v_below), v_hi - v_lo + 1 - v_upd);
                        END IF;
                        v_inserted := v_inserted + v_ins;
                        v_updated := v_updated + v_upd;
                    EXCEPTION WHEN data_exception OR integrity_constraint_violation
                                   OR cardinality_violation OR SQLSTATE '428C9' THEN
                        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                    END;
                END IF;
                CONTINUE WHEN v_state IS NULL;
                IF v_lo < v_hi THEN
                    v_pos := NULL;
                    IF v_guess AND v_sql IS NOT NULL THEN
                        v_n := pg_catalog.pg_sequence_last_value(
                            pg_catalog.to_regclass('pg_temp.pgjobs_import_at'));
                        v_pos := array_position(v_list, v_n, v_lo);
                    END IF;
                    IF v_pos IS NULL OR v_pos > v_hi THEN
                        -- No guess: halves, the right one below the left.
                        v_stack := v_stack || ARRAY[(v_lo + v_hi) / 2 + 1, v_hi, 1,
                                                    v_lo, (v_lo + v_hi) / 2, 1];
                    ELSE
                        -- After it, it alone, before it (no guess: expected
                        -- to go in; if not, halves), the last on top.
                        v_stack := v_stack
                                   || CASE WHEN v_pos < v_hi
                                           THEN ARRAY[v_pos + 1, v_hi, 1] ELSE '{}' END
                                   || ARRAY[v_pos, v_pos, 0]
                                   || CASE WHEN v_pos > v_lo
                                           THEN ARRAY[v_lo, v_pos - 1, 0] ELSE '{}' END;
                    END IF;
                    CONTINUE;
                END IF;
                v_n := v_list[v_lo];
                v_pos := CASE WHEN v_group_ns IS NULL THEN v_lo ELSE array_position(v_ns, v_n) END;
                v_line := p_lines[v_pos];
                -- The record as read, from the worker (p_records): a CSV
                -- record is staged as its fields, a JSONL line with its line
                -- end and carriage returns rewritten.
                v_record := p_records[v_pos];
                v_sql_rejects := v_sql_rejects || jsonb_build_object(
                    'line', coalesce(v_line, -v_n), 'reason', v_msg, 'state', v_state,
                    'record', v_record);
                v_batch_bytes := v_batch_bytes + octet_length(v_msg)
                                 + coalesce(octet_length(left(v_record, 65536)), 0);
                -- Records are tried in line order (CSV; JSONL per set of keys), so
                -- once the rejects up to this line pass the allowance (or their
                -- bytes the ceiling), the one that passed it is known: stop here.
                IF (jsonb_array_length(v_sql_rejects) + (
                       SELECT count(*) FROM jsonb_array_elements(v_worker_rejects) w
                        WHERE (w.value ->> 'line')::bigint < v_line) > v_allowed
                    OR v_bytes + v_batch_bytes + (
                       SELECT coalesce(sum(octet_length(w.value ->> 'reason')
                                           + coalesce(octet_length(left(w.value ->> 'record',
                                                                        65536)), 0)), 0)
                         FROM jsonb_array_elements(v_worker_rejects) w
                        WHERE (w.value ->> 'line')::bigint < v_line) > v_max_bytes)
                   AND v_job.payload ->> 'format' = 'csv' THEN
                    v_over := true;
                    EXIT groups;
                END IF;
            END LOOP;
        END LOOP;
        IF v_indexed THEN
            -- (The next batches' COPY need not keep it up.)
            EXECUTE 'DROP INDEX pg_temp.pgjobs_import_stage_n';
            PERFORM set_config('enable_sort', v_enable_sort, true);
        END IF;

        IF v_over OR jsonb_array_length(v_sql_rejects) + jsonb_array_length(v_worker_rejects)
                     > v_allowed THEN
            -- The first reject beyond max_rejects, in line order, fails the job.
            SELECT r.value INTO v_first
              FROM jsonb_array_elements(v_sql_rejects || v_worker_rejects) r
             ORDER BY (r.value ->> 'line')::bigint
            OFFSET v_allowed LIMIT 1;
        END IF;
        IF v_max_bytes IS NOT NULL THEN
            -- The first reject, in line order, whose bytes take the job's
            -- kept rejects past max_reject_bytes_per_job (v_bytes_at: the
            -- bytes they would then be).
            SELECT x.value, v_bytes + x.upto INTO v_first_bytes, v_bytes_at
              FROM (SELECT r.value, r.line,
                           sum(r.size) OVER (ORDER BY r.line, r.ord
                                             ROWS UNBOUNDED PRECEDING) AS upto
                      FROM (SELECT e.value, e.ord, (e.value ->> 'line')::bigint AS line,
                                   octet_length(e.value ->> 'reason')
                                   + coalesce(octet_length(left(e.value ->> 'record', 65536)),
                                              0) AS size
                              FROM jsonb_array_elements(v_sql_rejects || v_worker_rejects)
                                   WITH ORDINALITY e(value, ord)) r) x
             WHERE v_bytes + x.upto > v_max_bytes
             ORDER BY x.line
             LIMIT 1;
            -- It fails the job when no reject passed max_rejects before it;
            -- at the same line, max_rejects is named, but that reject is
            -- not kept either (below).
            IF v_first_bytes IS NOT NULL
               AND (v_first IS NULL OR (v_first_bytes ->> 'line')::bigint
                                       <= (v_first ->> 'line')::bigint) THEN
                v_bytes_over := true;
                IF v_first IS NULL OR (v_first_bytes ->> 'line')::bigint
                                      < (v_first ->> 'line')::bigint THEN
                    v_first := NULL;
                END IF;
            END IF;
        END IF;
        IF v_first IS NOT NULL OR v_bytes_over THEN
            v_refused := true;
            RAISE EXCEPTION 'too many rejects' USING ERRCODE = '22000',
                HINT = 'Rolls the batch''s rows back; handled just below.';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF NOT (v_refused OR v_need) THEN
            RAISE;
        END IF;
    END;
    IF v_need THEN
        RETURN jsonb_build_object('status', 'records');
    END IF;
    IF v_refused THEN
        -- The batch's rows are rolled back (rows of committed batches stay);
        -- its rejects up to the one that failed the job are kept (max_rejects
        -- above 0), so that
        -- the rejects object the worker writes as the job fails lists every
        -- bad record met; up to the one before it when that one's bytes
        -- pass max_reject_bytes_per_job, so the kept rejects stay within it.
        -- The checkpoint does not move: a retry redoes the
        -- batch (pgjobs.import_prepare forgets rejects past the checkpoint).
        INSERT INTO pgjobs.import_rejects (job_id, line, reason, record)
        SELECT p_id, (r.value ->> 'line')::bigint, r.value ->> 'reason',
               left(r.value ->> 'record', 65536)
          FROM jsonb_array_elements(v_sql_rejects || v_worker_rejects) r
         WHERE CASE WHEN v_bytes_over
                    THEN (r.value ->> 'line')::bigint < (v_first_bytes ->> 'line')::bigint
                    ELSE (r.value ->> 'line')::bigint <= (v_first ->> 'line')::bigint END
           AND v_max > 0  -- max_rejects 0: the error names the one bad record
        ON CONFLICT DO NOTHING;
        IF v_first IS NULL THEN
            IF v_client_bound THEN
                RETURN jsonb_build_object('status', 'rejected',
                    'error', format('line %s: its rejected record would bring the bytes role %s '
                                    'keeps (items, exclude lists, payloads, rejects) past the '
                                    'ceiling of %s bytes an administrator set for clients '
                                    '(max_item_bytes_per_client; import %s keeps %s bytes of '
                                    'rejects, and %s bytes were left to the client as this '
                                    'batch began); it was rejected for: %s',
                                    v_first_bytes ->> 'line',
                                    -- As it is called now (renamed since the submit).
                                    pgjobs._submitter_name(v_job.submitted_by,
                                                           v_job.submitted_by_oid),
                                    coalesce((pgjobs._defaults()
                                              ->> 'max_item_bytes_per_client')::bigint,
                                             1073741824),
                                    p_id, v_bytes, greatest(v_client_room, 0),
                                    v_first_bytes ->> 'reason'),
                    'state', '22000',  -- fails the job, as past max_reject_bytes_per_job
                    'hint', 'Fix the records listed in pgjobs.import_rejects and the rejects '
                            'object (or leave them out of the source), let finished jobs be '
                            'pruned (pgjobs.prune), then pgjobs.retry(id) resumes after the last '
                            'committed batch; or ask an administrator to raise the ceiling with '
                            'pgjobs.set_defaults(''{"max_item_bytes_per_client": N}'').');
            END IF;
            RETURN jsonb_build_object('status', 'rejected',
                'error', format('line %s: its rejected record would bring the rejects import %s '
                                'keeps to %s bytes, past the ceiling of %s bytes an '
                                'administrator set for clients (max_reject_bytes_per_job); '
                                'it was rejected for: %s',
                                v_first_bytes ->> 'line', p_id, v_bytes_at, v_max_bytes,
                                v_first_bytes ->> 'reason'),
                'state', '22000',
                'hint', format('Fix the records listed in pgjobs.import_rejects and the '
                               'rejects object (or leave them out of the source: bytes before '
                               'the last committed batch must stay as they are), then '
                               'pgjobs.retry(id) resumes after the last committed batch; or '
                               'ask an administrator to raise the ceiling with '
                               'pgjobs.set_defaults(''{"max_reject_bytes_per_job": N}'') '
                               '(now %s) or to submit the import.', v_max_bytes));
        END IF;
        RETURN jsonb_build_object('status', 'rejected',
            'error', format('line %s: %s', v_first ->> 'line', v_first ->> 'reason'),
            'state', coalesce(v_first ->> 'state', '22000'),
            'hint', pgjobs._import_reject_hint(v_max));
    END IF;
    -- With on_duplicate error a staged record is inserted or rejected:
    -- nothing is skipped. One the statement left out (a BEFORE INSERT row
    -- trigger of the target returned NULL for it) did not land, and the job
    -- must not count it as skipped and succeed ("every record lands exactly
    -- once"): 27000, the batch undone with the caller's transaction, the
    -- job failed for good. Not with update: a BEFORE UPDATE trigger that
    -- returns NULL for an update that changes nothing
    -- (suppress_redundant_updates_trigger) leaves a record that is already
    -- there, which a re-import must not fail on, and the statement's counts
    -- cannot tell it from a record kept out; such records count as skipped
    -- (docs/imports.md).
    IF v_staged - v_inserted - v_updated - jsonb_array_length(v_sql_rejects) > 0
       AND coalesce(v_job.payload ->> 'on_duplicate', 'error') = 'error' THEN
        -- Routed records are counted from the insert counters, which a
        -- session with track_counts off does not keep: every routed record
        -- read as kept out, blaming the trigger (hV review). Say so instead.
        IF v_routed AND NOT current_setting('track_counts')::boolean THEN
            RAISE EXCEPTION 'import % cannot count the records routed into the tables that '
                            'inherit from %: track_counts is off in the importer''s session',
                            p_id, v_job.target
                USING ERRCODE = '55000',
                HINT = 'Turn track_counts on for the importer''s role or database (ALTER ROLE '
                       '... SET track_counts = on; the default is on) and retry the job.';
        END IF;
        RAISE EXCEPTION '% of the % records of this batch of import % were not written (a '
                        'BEFORE INSERT or UPDATE trigger on % returned NULL for them)',
                        v_staged - v_inserted - v_updated - jsonb_array_length(v_sql_rejects),
                        v_staged, p_id, v_job.target
            USING ERRCODE = '27000',
            HINT = 'A trigger of the target keeps these records out: the import cannot write them '
                   'and does not report that it did. Change the trigger, or leave those records '
                   'out of the source, and submit again. A trigger that writes a record itself '
                   '(updates the row already there and returns NULL) needs on_duplicate update '
                   'or skip, where such records count as skipped.';
    END IF;
    -- (The bytes of the rows written, as kept: the checkpoint's running sum.)
    WITH kept AS (
        INSERT INTO pgjobs.import_rejects (job_id, line, reason, record)
        SELECT p_id, (r.value ->> 'line')::bigint, r.value ->> 'reason',
               left(r.value ->> 'record', 65536)
          FROM jsonb_array_elements(v_sql_rejects || v_worker_rejects) r
        ON CONFLICT DO NOTHING
        RETURNING octet_length(reason) + coalesce(octet_length(record), 0) AS size)
    SELECT v_bytes + coalesce(sum(k.size), 0) INTO v_bytes FROM kept k;

    v_ck := coalesce(p_checkpoint, '{}') || jsonb_build_object(
        'inserted', coalesce((v_ck ->> 'inserted')::bigint, 0) + v_inserted,
        'updated', coalesce((v_ck ->> 'updated')::bigint, 0) + v_updated,
        'skipped', coalesce((v_ck ->> 'skipped')::bigint, 0)
                   + (v_staged - v_inserted - v_updated - jsonb_array_length(v_sql_rejects)),
        'rejected', v_rejected + jsonb_array_length(v_sql_rejects)
                    + jsonb_array_length(v_worker_rejects),
        'records', coalesce((v_ck ->> 'records')::bigint, 0) + v_staged
                   + jsonb_array_length(v_worker_rejects),
        'mapping', coalesce(v_job.checkpoint -> 'mapping', '{}'::jsonb) || v_mapping,
        'reject_bytes', v_bytes)
        -- The rejects object an earlier attempt created
        -- (pgjobs.import_rejects_placed): the worker's checkpoint does not
        -- name it, and forgotten, the next attempt's rejects went to a new
        -- object, the old one named and deleted by nothing.
        -- Nor whether the job created it (pgjobs.import_rejects_created)
        -- or the digest of what it was creating there
        -- (pgjobs.import_rejects_creating).
        || jsonb_strip_nulls(jsonb_build_object(
               'rejects_uri', v_job.checkpoint -> 'rejects_uri',
               'rejects_created', v_job.checkpoint -> 'rejects_created',
               'rejects_sha256', v_job.checkpoint -> 'rejects_sha256'));
    IF p_total IS NOT NULL AND v_job.total IS DISTINCT FROM p_total THEN
        UPDATE pgjobs.jobs j SET total = p_total WHERE j.id = p_id;
    END IF;
    IF NOT pgjobs.heartbeat(p_id, p_worker, p_done, v_ck) THEN
        -- A pause requested while the batch ran (the job row is locked, so
        -- the request came before this call): the heartbeat has parked the
        -- job `paused` with this batch's checkpoint. The batch commits with
        -- it; the worker stops, and pgjobs.resume reads on after the batch.
        IF v_job.pause_requested_at IS NOT NULL
           AND (SELECT j.status FROM pgjobs.jobs j WHERE j.id = p_id) = 'paused' THEN
            RETURN jsonb_build_object('status', 'paused')
                || (v_ck - ARRAY['offset', 'line', 'fields', 'v', 'history', 'mapping', 'size',
                         'rejects_uri', 'rejects_created', 'rejects_sha256', 'reject_bytes']);
        END IF;
        RAISE EXCEPTION 'job % lost its lease during the batch', p_id
            USING ERRCODE = '40001', HINT = 'The batch rolled back; the job''s owner redoes it.';
    END IF;
    RETURN jsonb_build_object('status', 'ok')
        || (v_ck - ARRAY['offset', 'line', 'fields', 'v', 'history', 'mapping', 'size',
                         'rejects_uri', 'rejects_created', 'rejects_sha256', 'reject_bytes']);
END
$$;

COMMENT ON FUNCTION pgjobs.import_batch(bigint, text, text[], bigint[], bigint, bigint, jsonb, jsonb,
                                        text[]) IS
'For the worker of import job p_id: moves the staged batch into the target and commits, with the '
'caller''s transaction, its rejects and the checkpoint; fenced on the claim.';
