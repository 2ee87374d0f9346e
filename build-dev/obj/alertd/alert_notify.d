build-dev/obj/alertd/alert_notify.o: alertd/alert_notify.c \
 alertd/alert_notify.h alertd/alert_channel.h alertd/alert_rule.h \
 alertd/alert_store.h alertd/alert_engine.h common/schema.h \
 common/clock.h common/log.h common/series.h common/test.h \
 common/xalloc.h
alertd/alert_notify.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
alertd/alert_store.h:
alertd/alert_engine.h:
common/schema.h:
common/clock.h:
common/log.h:
common/series.h:
common/test.h:
common/xalloc.h:
