// CPU kernel of the scheduler op: prefix survival per request (core/schedule.h), then the
// admission path produced lazily by a k-way merge of the rows (each row's candidates are
// already in path order, so a binary heap over the R row heads yields the globally sorted
// path one candidate at a time), scanned by the shared schedule_scan. The causal scheduler
// usually stops after a few candidates, so it costs O(R + n log R) instead of a full sort of
// the R*K candidates; the global search visits the whole path in O(R K log R).
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../core/schedule.h"
#include "../schedule_args.h"

namespace dspark {
namespace cpu {
namespace {

// Binary min-heap (in path order) of the requests that still have candidates; the head of
// request r is its candidate pos[r] (j = pos[r] + 1).
class RowMerge {
 public:
  RowMerge(const double* a, int64_t k, const int64_t* count, int64_t rows)
      : a_(a), k_(k), count_(count), pos_(rows, 0) {
    heap_.reserve(rows);
    popped_.reserve(rows);
    for (int64_t r = 0; r < rows; ++r)
      if (count[r] > 0) heap_.push_back(static_cast<int32_t>(r));
    for (int64_t i = static_cast<int64_t>(heap_.size()) / 2 - 1; i >= 0; --i) sift_down(i);
  }

  int64_t size() const { return static_cast<int64_t>(heap_.size()); }

  // Pops the next candidate of the path: its request and prefix survival.
  double next_a() {
    const int32_t r = heap_[0];
    const double val = head_a(r);
    popped_.push_back(r);
    if (++pos_[r] < count_[r]) {
      sift_down(0);
    } else {
      heap_[0] = heap_.back();
      heap_.pop_back();
      if (!heap_.empty()) sift_down(0);
    }
    return val;
  }

  // Requests of the candidates popped so far, in path order.
  const std::vector<int32_t>& popped() const { return popped_; }

 private:
  double head_a(int32_t r) const { return a_[r * k_ + pos_[r]]; }
  bool before(int32_t x, int32_t y) const {
    return candidate_before(head_a(x), pos_[x], x, head_a(y), pos_[y], y);
  }
  void sift_down(int64_t i) {
    const int64_t n = size();
    const int32_t item = heap_[i];
    while (true) {
      int64_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], item)) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = item;
  }

  const double* a_;
  int64_t k_;
  const int64_t* count_;
  std::vector<int64_t> pos_;
  std::vector<int32_t> heap_;
  std::vector<int32_t> popped_;
};

template <typename conf_t, typename sps_t>
void run_schedule(ScheduleArgs& args) {
  const int64_t rows = args.num_requests, k = args.max_draft;
  const conf_t* conf = args.confidence.const_data_ptr<conf_t>();
  const int64_t* max_len = args.max_len ? args.max_len->const_data_ptr<int64_t>() : nullptr;
  std::vector<double> a(static_cast<size_t>(rows * k));
  std::vector<int64_t> count(static_cast<size_t>(rows));
  // A row is K multiplications: thread only for very large batches.
  at::parallel_for(0, rows, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t cap = max_len ? sanitize_max_len(max_len[r], k) : k;
      count[r] = row_prefix_survival(conf + r * k, 1, k, cap, a.data() + r * k);
    }
  });
  int64_t path_len = 0;
  for (int64_t r = 0; r < rows; ++r) path_len += count[r];
  const int64_t capacity = args.capacity ? args.capacity->const_data_ptr<int64_t>()[0] : 0;
  const int64_t limit =
      schedule_limit(path_len, rows, args.max_batch_tokens, args.mode, capacity);

  RowMerge path(a.data(), k, count.data(), rows);
  const ScheduleOutcome out =
      schedule_scan(path, rows, args.sps.const_data_ptr<sps_t>(), limit, args.mode);

  int64_t* lengths = args.lengths.data_ptr<int64_t>();
  std::fill_n(lengths, rows, int64_t{0});
  // Path prefixes are per-request prefixes: l_r counts request r's admitted candidates.
  for (int64_t i = 0; i < out.admitted; ++i) ++lengths[path.popped()[i]];
  args.num_admitted.data_ptr<int64_t>()[0] = out.admitted;
  args.expected_tokens.data_ptr<double>()[0] = out.expected_tokens;
  args.throughput.data_ptr<double>()[0] = out.throughput;
}

ScheduleOutputs schedule_prefix_cpu(const at::Tensor& confidence, const at::Tensor& sps,
                                    const std::optional<at::Tensor>& max_len,
                                    const std::optional<at::Tensor>& capacity,
                                    std::optional<int64_t> max_batch_tokens, bool early_stop) {
  ScheduleArgs args = make_schedule_args("schedule_prefix", confidence, sps, max_len, capacity,
                                         max_batch_tokens, early_stop);
  AT_DISPATCH_FLOATING_TYPES(args.confidence.scalar_type(), "dspark_schedule_cpu", [&] {
    using conf_t = scalar_t;
    if (args.sps.scalar_type() == at::kDouble) {
      run_schedule<conf_t, double>(args);
    } else {
      run_schedule<conf_t, float>(args);
    }
  });
  return args.outputs();
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) { m.impl("schedule_prefix", &cpu::schedule_prefix_cpu); }

}  // namespace dspark
