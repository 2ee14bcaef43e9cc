"""The sequential recommendation branch: SASRec / BERT4Rec with PLM-initialised item tables."""
