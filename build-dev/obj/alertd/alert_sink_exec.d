build-dev/obj/alertd/alert_sink_exec.o: alertd/alert_sink_exec.c \
 alertd/alert_sink_exec.h alertd/alert_channel.h alertd/alert_rule.h \
 common/clock.h common/test.h common/xalloc.h
alertd/alert_sink_exec.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
common/clock.h:
common/test.h:
common/xalloc.h:
