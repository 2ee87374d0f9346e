build-dev/obj/ingestd/ingest_spool.o: ingestd/ingest_spool.c \
 ingestd/ingest_spool.h common/crc.h common/daemon.h common/cfg.h \
 common/fsyncer.h common/log.h common/test.h common/xalloc.h
ingestd/ingest_spool.h:
common/crc.h:
common/daemon.h:
common/cfg.h:
common/fsyncer.h:
common/log.h:
common/test.h:
common/xalloc.h:
