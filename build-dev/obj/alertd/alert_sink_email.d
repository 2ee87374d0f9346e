build-dev/obj/alertd/alert_sink_email.o: alertd/alert_sink_email.c \
 alertd/alert_sink_email.h alertd/alert_channel.h alertd/alert_rule.h \
 alertd/alert_sink_exec.h common/clock.h common/test.h common/xalloc.h
alertd/alert_sink_email.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
alertd/alert_sink_exec.h:
common/clock.h:
common/test.h:
common/xalloc.h:
