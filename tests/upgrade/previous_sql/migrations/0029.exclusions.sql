-- pgjobs 0029: long exclude lists live in a table, not in the predicate.
-- A delete's exclude list ("every row of the scope except these keys") was
-- inlined into jobs.predicate as one array literal, and the predicate is
-- planned again by every page and every masked read: 100,000 keys cost
-- 0.2-0.5 s of planning per statement (the planner estimates `= ANY` one
-- element at a time). A list longer than 100 keys is now stored once per
-- job in pgjobs.job_exclusions (canonical text, pgjobs._canonical_text) and
-- the predicate probes it row by row on its primary key
-- (pgjobs._exclusion_clause): its text and its planning no longer grow
-- with the list, nor the cost of a row. Shorter lists, and keys of types
-- whose text is not their identity, stay inline.
-- Deletes of an earlier release still queued, running or paused with a
-- long list are moved here: their keys are copied from jobs.survivors
-- (stored since 0016) and the inline tail of their predicate, which this
-- migration rebuilds from the same fields exactly as
-- pgjobs._row_selection wrote it, is replaced; a predicate that does not
-- end with that text is left as it is (correct, only slower). A migration
-- never calls a pgjobs function, so the new tail is spelt out here too.
-- pgjobs._row_selection returns the canonical keys and the predicate's
-- head now: its result type changes, so the old signature is dropped here.
-- depends: 0025.items

CREATE TABLE pgjobs.job_exclusions (
    job_id bigint NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    key    text   COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, key)
);
COMMENT ON TABLE pgjobs.job_exclusions IS
    'The exclude list of a delete longer than 100 keys, one row per key (canonical text); '
    'the job''s predicate reads it (pgjobs._exclusion_clause). Deleted with its job.';

-- Read access mirrors the job's, as for pgjobs.job_items: a client that
-- pastes pgjobs.mask() into its own query reads the keys of the jobs it may
-- see, and only those.
ALTER TABLE pgjobs.job_exclusions ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgjobs.job_exclusions FORCE ROW LEVEL SECURITY;

CREATE POLICY job_exclusions_admin ON pgjobs.job_exclusions AS PERMISSIVE FOR ALL
    TO pgjobs_admin USING (true) WITH CHECK (true);

CREATE POLICY job_exclusions_owner ON pgjobs.job_exclusions AS PERMISSIVE FOR ALL TO PUBLIC
    USING ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
              FROM pg_catalog.pg_class c
             WHERE c.oid = 'pgjobs.job_exclusions'::pg_catalog.regclass))
    WITH CHECK ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                   FROM pg_catalog.pg_class c
                  WHERE c.oid = 'pgjobs.job_exclusions'::pg_catalog.regclass));

CREATE POLICY job_exclusions_client_read ON pgjobs.job_exclusions AS PERMISSIVE FOR SELECT
    TO pgjobs_client
    USING (EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = job_exclusions.job_id));

COMMENT ON POLICY job_exclusions_client_read ON pgjobs.job_exclusions IS
    'A pgjobs_client sees the excluded keys of the jobs it may see in pgjobs.jobs.';

DROP FUNCTION IF EXISTS pgjobs._row_selection(pgjobs.target_registry, text, jsonb, text[],
                                              timestamptz);

-- Pending deletes of an earlier release with more than 100 excluded keys.
CREATE TEMPORARY TABLE pgjobs_0029_moved AS
SELECT j.id,
       pg_catalog.format(' AND NOT (%I = ANY (%s))', j.survivors ->> 'key_column',
           pg_catalog.format('%L::%s[]',
               ARRAY(SELECT pg_catalog.jsonb_array_elements_text(j.survivors -> 'exclude')),
               j.survivors ->> 'key_type')) AS old_tail,
       pg_catalog.format(' AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x '
                         'WHERE x.job_id = %s AND x.key = (%I::text COLLATE "C") OFFSET 0))',
                         j.id, j.survivors ->> 'key_column')
           AS new_tail
  FROM pgjobs.jobs j
 WHERE j.kind = 'delete' AND j.status IN ('queued', 'running', 'paused')
   AND j.survivors IS NOT NULL
   AND pg_catalog.jsonb_typeof(j.survivors -> 'exclude') = 'array'
   AND pg_catalog.jsonb_array_length(j.survivors -> 'exclude') > 100
   -- keys whose text is their identity (pgjobs._exclusion_clause)
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                 LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                WHERE a.attrelid = j.target AND a.attname = j.survivors ->> 'key_column'
                  AND NOT a.attisdropped
                  AND (a.atttypid IN ('smallint'::pg_catalog.regtype,
                                      'integer'::pg_catalog.regtype,
                                      'bigint'::pg_catalog.regtype, 'uuid'::pg_catalog.regtype)
                       OR (a.atttypid IN ('text'::pg_catalog.regtype,
                                          'character varying'::pg_catalog.regtype)
                           AND coalesce(co.collisdeterministic, true))));

DELETE FROM pgjobs_0029_moved m
 USING pgjobs.jobs j
 WHERE j.id = m.id AND NOT pg_catalog.right(j.predicate, pg_catalog.length(m.old_tail)) = m.old_tail;

INSERT INTO pgjobs.job_exclusions (job_id, key)
SELECT DISTINCT j.id, k.key
  FROM pgjobs_0029_moved m
  JOIN pgjobs.jobs j ON j.id = m.id
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(j.survivors -> 'exclude') AS k(key);

UPDATE pgjobs.jobs j
   SET predicate = pg_catalog.left(j.predicate, -pg_catalog.length(m.old_tail)) || m.new_tail,
       survivors = (j.survivors - 'exclude')
                   || pg_catalog.jsonb_build_object(
                          'exclusions', 'table',
                          'excluded', (SELECT pg_catalog.count(*) FROM pgjobs.job_exclusions x
                                        WHERE x.job_id = j.id))
  FROM pgjobs_0029_moved m
 WHERE j.id = m.id;

DROP TABLE pg_temp.pgjobs_0029_moved;

-- A submit looks its target up and checks it once, and hands the
-- registration to the steps that looked it up again (issue 11): new
-- trailing parameters, so the old signatures go.
DROP FUNCTION IF EXISTS pgjobs._compile_filter(regclass, jsonb);
DROP FUNCTION IF EXISTS pgjobs._insert_job(text, regclass, text, jsonb, jsonb, text[], text, text);
DROP FUNCTION IF EXISTS pgjobs._insert_job_row(text, regclass, text, jsonb, jsonb, text[], text,
                                               text);
