-- A batch applied on what the projector expected (projector/expected.rs) claims its checkpoints
-- and writes its rows in one statement, which asks this whether every checkpoint was where the
-- projector expected; when one was not, the statement is aborted whole and the batch goes the
-- long way.
CREATE FUNCTION inbox_claimed_as_expected(ok boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'a checkpoint of the batch was not where the projector expected'
            USING ERRCODE = 'MLX01';
    END IF;
    RETURN true;
END $$;
