// The test bed's Kafka client: a thin command-line shell over Kafka's own Java client
// (kafka-clients from the same Maven download as the broker). The Rust harness compiles it
// with javac against each pinned version and talks to it through lines of tab-separated text.
//
// Binary fields are written as "x" + lowercase hex ("x" alone is the empty byte string) and
// null as "~", so keys, values and header values survive exactly, nulls included.
//
// Commands (first argument), all with the bootstrap servers as second argument:
//   create-topic B NAME PARTITIONS RF [k=v ...]   -> "topic NAME ID"
//   describe B                                     -> "partition TOPIC ID P LEADER R1,R2,.."
//   plan B FILE                                    -> runs a produce plan (see runPlan), "ack ..."
//   consume B read_committed|read_uncommitted TOPIC... -> "rec TOPIC P ..." lines, then
//                                                     "end TOPIC P OFFSET" per partition
//   group-consume B GROUP TOPIC MAX ISOLATION      -> "committed P OFFSET"
//   group-offsets B                                -> "group G TOPIC P OFFSET"
import java.io.BufferedReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Driver {
  static final long DEADLINE_MS = Long.parseLong(System.getProperty("driver.deadline.ms", "120000"));

  public static void main(String[] args) throws Exception {
    if (args.length < 2) die("usage: Driver COMMAND BOOTSTRAP ...");
    String cmd = args[0];
    String bootstrap = args[1];
    switch (cmd) {
      case "create-topic": createTopic(bootstrap, Arrays.copyOfRange(args, 2, args.length)); break;
      case "describe": describe(bootstrap); break;
      case "plan": runPlan(bootstrap, args[2]); break;
      case "consume": consume(bootstrap, args[2], Arrays.copyOfRange(args, 3, args.length)); break;
      case "group-consume": groupConsume(bootstrap, args[2], args[3], Integer.parseInt(args[4]), args[5]); break;
      case "group-offsets": groupOffsets(bootstrap); break;
      default: die("unknown command " + cmd);
    }
    System.out.flush();
    // Kafka clients leave non-daemon threads behind on some paths; the answer is complete.
    System.exit(0);
  }

  static void die(String msg) {
    System.err.println("driver: " + msg);
    System.exit(2);
  }

  static Properties common(String bootstrap) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("request.timeout.ms", "30000");
    p.put("default.api.timeout.ms", "60000");
    return p;
  }

  // ---- encoding ---------------------------------------------------------------------------
  static String enc(byte[] b) {
    if (b == null) return "~";
    StringBuilder sb = new StringBuilder(1 + b.length * 2).append('x');
    for (byte x : b) sb.append(Character.forDigit((x >> 4) & 15, 16)).append(Character.forDigit(x & 15, 16));
    return sb.toString();
  }

  static byte[] dec(String s) {
    if (s.equals("~")) return null;
    if (!s.startsWith("x") || (s.length() % 2) != 1) throw new IllegalArgumentException("bad field " + s);
    byte[] b = new byte[(s.length() - 1) / 2];
    for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(1 + 2 * i, 3 + 2 * i), 16);
    return b;
  }

  static String headers(Iterable<Header> hs) {
    List<String> parts = new ArrayList<>();
    for (Header h : hs) {
      parts.add(enc(h.key().getBytes(StandardCharsets.UTF_8)));
      parts.add(enc(h.value()));
    }
    return parts.size() / 2 + (parts.isEmpty() ? "" : "\t" + String.join("\t", parts));
  }

  static <T> T retry(String what, java.util.concurrent.Callable<T> op) throws Exception {
    long deadline = System.currentTimeMillis() + DEADLINE_MS;
    while (true) {
      try {
        return op.call();
      } catch (Exception e) {
        Throwable c = e instanceof ExecutionException ? e.getCause() : e;
        boolean retriable = c instanceof RetriableException || c instanceof InvalidReplicationFactorException
            || c instanceof TimeoutException;
        if (!retriable || System.currentTimeMillis() > deadline) throw new RuntimeException(what + ": " + c, c);
        Thread.sleep(200);
      }
    }
  }

  // ---- admin ------------------------------------------------------------------------------
  static void createTopic(String bootstrap, String[] a) throws Exception {
    String name = a[0];
    int partitions = Integer.parseInt(a[1]);
    short rf = Short.parseShort(a[2]);
    Map<String, String> cfg = new HashMap<>();
    for (int i = 3; i < a.length; i++) {
      int eq = a[i].indexOf('=');
      cfg.put(a[i].substring(0, eq), a[i].substring(eq + 1));
    }
    try (Admin admin = Admin.create(common(bootstrap))) {
      NewTopic t = new NewTopic(name, partitions, rf).configs(cfg);
      // A cluster whose brokers have not all registered yet refuses the replication factor:
      // that is retried until the deadline.
      Uuid id = retry("create topic " + name, () -> {
        try {
          return admin.createTopics(List.of(t)).topicId(name).get();
        } catch (ExecutionException e) {
          if (e.getCause() instanceof TopicExistsException) {
            return admin.describeTopics(List.of(name)).allTopicNames().get().get(name).topicId();
          }
          throw e;
        }
      });
      // Wait until every partition has a leader, so producers do not race the election.
      retry("leaders of " + name, () -> {
        TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
        for (TopicPartitionInfo p : d.partitions())
          if (p.leader() == null || p.isr().size() < rf) throw new LeaderNotAvailableException("no leader yet");
        return d;
      });
      System.out.println("topic\t" + name + "\t" + id);
    }
  }

  static void describe(String bootstrap) throws Exception {
    try (Admin admin = Admin.create(common(bootstrap))) {
      Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get();
      Map<String, TopicDescription> ds = admin.describeTopics(names).allTopicNames().get();
      for (TopicDescription d : new TreeMap<>(ds).values()) {
        for (TopicPartitionInfo p : d.partitions()) {
          StringJoiner r = new StringJoiner(",");
          for (Node n : p.replicas()) r.add(Integer.toString(n.id()));
          System.out.println("partition\t" + d.name() + "\t" + d.topicId() + "\t" + p.partition() + "\t"
              + (p.leader() == null ? -1 : p.leader().id()) + "\t" + r);
        }
      }
    }
  }

  // ---- produce plan -----------------------------------------------------------------------
  // One instruction per line, tab-separated:
  //   producer NAME k=v ...        creates a producer (initTransactions if transactional.id set)
  //   send NAME TOPIC PART|- TS|- KEY VALUE NHEADERS [HK HV]...
  //   begin NAME | commit NAME | abort NAME | flush NAME | close NAME
  //   signal PATH | await PATH     (hand-over with the test: create PATH, wait for PATH)
  // Acks are printed as "ack SEQ TOPIC PARTITION OFFSET TIMESTAMP" when the producer is
  // flushed, committed or closed; SEQ numbers the send lines of the plan from 0.
  static final class Pending {
    final int seq;
    final Future<RecordMetadata> f;
    Pending(int seq, Future<RecordMetadata> f) { this.seq = seq; this.f = f; }
  }

  static void runPlan(String bootstrap, String file) throws Exception {
    Map<String, KafkaProducer<byte[], byte[]>> producers = new HashMap<>();
    Map<String, List<Pending>> pending = new HashMap<>();
    int seq = 0;
    int lineNo = 0;
    try (BufferedReader r = Files.newBufferedReader(Paths.get(file), StandardCharsets.UTF_8)) {
      String line;
      while ((line = r.readLine()) != null) {
        lineNo++;
        if (line.isEmpty()) continue;
        String[] f = line.split("\t", -1);
        String op = f[0];
        String name = f[1];
        try {
          switch (op) {
            case "producer": {
              Properties p = common(bootstrap);
              p.put("key.serializer", ByteArraySerializer.class.getName());
              p.put("value.serializer", ByteArraySerializer.class.getName());
              for (int i = 2; i < f.length; i++) {
                int eq = f[i].indexOf('=');
                p.put(f[i].substring(0, eq), f[i].substring(eq + 1));
              }
              KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p);
              if (p.containsKey("transactional.id")) prod.initTransactions();
              producers.put(name, prod);
              pending.put(name, new ArrayList<>());
              break;
            }
            case "send": {
              Integer part = f[3].equals("-") ? null : Integer.valueOf(f[3]);
              Long ts = f[4].equals("-") ? null : Long.valueOf(f[4]);
              int nh = Integer.parseInt(f[7]);
              List<Header> hs = new ArrayList<>();
              for (int i = 0; i < nh; i++)
                hs.add(new RecordHeader(new String(dec(f[8 + 2 * i]), StandardCharsets.UTF_8), dec(f[9 + 2 * i])));
              ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(f[2], part, ts, dec(f[5]), dec(f[6]), hs);
              pending.get(name).add(new Pending(seq++, producers.get(name).send(rec)));
              break;
            }
            case "begin": producers.get(name).beginTransaction(); break;
            case "flush": producers.get(name).flush(); printAcks(pending.get(name)); break;
            case "commit": producers.get(name).commitTransaction(); printAcks(pending.get(name)); break;
            case "abort":
              // Records must reach the log before the abort marker, or they were never written:
              // flush first so the aborted batches exist on disk (and in the .txnindex).
              producers.get(name).flush();
              printAcks(pending.get(name));
              producers.get(name).abortTransaction();
              System.out.println("aborted\t" + name);
              break;
            case "close": producers.get(name).flush(); printAcks(pending.get(name)); producers.remove(name).close(); break;
            // The plan's producers stay as they are (a transaction stays open) while the test
            // acts: "signal PATH" creates PATH; "await PATH" waits for the test to create it.
            case "signal": Files.write(Paths.get(name), new byte[0]); break;
            case "await": {
              long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(300);
              while (!Files.exists(Paths.get(name))) {
                if (System.nanoTime() > deadline) die("plan line " + lineNo + ": " + name + " never appeared");
                Thread.sleep(50);
              }
              break;
            }
            default: die("plan line " + lineNo + ": unknown op " + op);
          }
        } catch (RuntimeException | ExecutionException e) {
          die("plan line " + lineNo + " (" + op + "): " + e);
        }
      }
    }
    for (Map.Entry<String, KafkaProducer<byte[], byte[]>> e : producers.entrySet()) {
      e.getValue().flush();
      printAcks(pending.get(e.getKey()));
      e.getValue().close();
    }
  }

  static void printAcks(List<Pending> ps) throws Exception {
    for (Pending p : ps) {
      RecordMetadata m = p.f.get(60, TimeUnit.SECONDS);
      System.out.println("ack\t" + p.seq + "\t" + m.topic() + "\t" + m.partition() + "\t" + m.offset() + "\t" + m.timestamp());
    }
    ps.clear();
  }

  // ---- consume ----------------------------------------------------------------------------
  static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String isolation, String group) {
    Properties p = common(bootstrap);
    p.put("key.deserializer", ByteArrayDeserializer.class.getName());
    p.put("value.deserializer", ByteArrayDeserializer.class.getName());
    p.put("isolation.level", isolation);
    p.put("enable.auto.commit", "false");
    p.put("auto.offset.reset", "earliest");
    p.put("max.partition.fetch.bytes", "1048576");
    if (group != null) p.put("group.id", group);
    return new KafkaConsumer<>(p);
  }

  static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic) throws Exception {
    List<PartitionInfo> infos = retry("partitions of " + topic, () -> {
      List<PartitionInfo> l = c.partitionsFor(topic, Duration.ofSeconds(30));
      if (l == null || l.isEmpty()) throw new UnknownTopicOrPartitionException(topic);
      return l;
    });
    List<TopicPartition> tps = new ArrayList<>();
    for (PartitionInfo i : infos) tps.add(new TopicPartition(topic, i.partition()));
    tps.sort(Comparator.comparingInt(TopicPartition::partition));
    return tps;
  }

  // Reads every partition of every TOPIC from its start to the end offset taken at the start
  // (the high watermark, or the last stable offset under read_committed), in one consumer:
  // one JVM for a whole check instead of one per topic. Fails if the deadline passes first:
  // a short read must never look like a complete one.
  static void consume(String bootstrap, String isolation, String[] topics) throws Exception {
    if (topics.length == 0) die("consume: no topic given");
    try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, isolation, null)) {
      List<TopicPartition> tps = new ArrayList<>();
      for (String topic : topics) tps.addAll(partitions(c, topic));
      c.assign(tps);
      c.seekToBeginning(tps);
      Map<TopicPartition, Long> end = retry("end offsets", () -> c.endOffsets(tps, Duration.ofSeconds(30)));
      long deadline = System.currentTimeMillis() + DEADLINE_MS;
      Set<TopicPartition> open = new HashSet<>();
      for (TopicPartition tp : tps) if (c.position(tp) < end.get(tp)) open.add(tp);
      while (!open.isEmpty()) {
        if (System.currentTimeMillis() > deadline) die("consume " + String.join(",", topics) + ": deadline passed with " + open + " unfinished");
        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
          TopicPartition tp = new TopicPartition(r.topic(), r.partition());
          if (r.offset() >= end.get(tp)) continue;
          System.out.println("rec\t" + r.topic() + "\t" + r.partition() + "\t" + r.offset() + "\t" + r.timestamp() + "\t"
              + r.timestampType().id + "\t" + enc(r.key()) + "\t" + enc(r.value()) + "\t" + headers(r.headers()));
        }
        open.removeIf(tp -> c.position(tp) >= end.get(tp));
      }
      for (TopicPartition tp : tps) System.out.println("end\t" + tp.topic() + "\t" + tp.partition() + "\t" + end.get(tp));
    }
  }

  // Joins GROUP, reads up to MAX records of TOPIC (all of them if fewer), and commits the
  // position after the last record read in each partition.
  static void groupConsume(String bootstrap, String group, String topic, int max, String isolation) throws Exception {
    try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, isolation, group)) {
      List<TopicPartition> tps = partitions(c, topic);
      Map<TopicPartition, Long> end = retry("end offsets", () -> c.endOffsets(tps, Duration.ofSeconds(30)));
      c.subscribe(List.of(topic));
      Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
      long deadline = System.currentTimeMillis() + DEADLINE_MS;
      int seen = 0;
      while (seen < max) {
        if (System.currentTimeMillis() > deadline) die("group-consume " + topic + ": deadline passed after " + seen + " records");
        ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<byte[], byte[]> r : rs) {
          if (seen == max) break;
          commit.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
          seen++;
        }
        if (rs.isEmpty() && !c.assignment().isEmpty()) {
          boolean done = true;
          for (TopicPartition tp : c.assignment()) if (c.position(tp) < end.get(tp)) done = false;
          if (done) break;
        }
      }
      c.commitSync(commit);
      for (Map.Entry<TopicPartition, OffsetAndMetadata> e : new TreeMap<TopicPartition, OffsetAndMetadata>(
          Comparator.comparingInt(TopicPartition::partition)) {{ putAll(commit); }}.entrySet())
        System.out.println("committed\t" + e.getKey().partition() + "\t" + e.getValue().offset());
    }
  }

  @SuppressWarnings("deprecation")
  static void groupOffsets(String bootstrap) throws Exception {
    try (Admin admin = Admin.create(common(bootstrap))) {
      Collection<ConsumerGroupListing> gs = admin.listConsumerGroups().all().get();
      List<String> ids = new ArrayList<>();
      for (ConsumerGroupListing g : gs) ids.add(g.groupId());
      Collections.sort(ids);
      for (String g : ids) {
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get();
        List<TopicPartition> tps = new ArrayList<>(m.keySet());
        tps.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
        for (TopicPartition tp : tps)
          if (m.get(tp) != null)
            System.out.println("group\t" + g + "\t" + tp.topic() + "\t" + tp.partition() + "\t" + m.get(tp).offset());
      }
    }
  }
}
