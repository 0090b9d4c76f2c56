// Handler routing: each `when` field on its own, then together.
#include "core/when.hpp"

#include <doctest/doctest.h>

#include "core/event.hpp"

using fbr::core::Event;
using fbr::core::matches;
using fbr::core::OutputFile;
using fbr::core::SystemRef;
using fbr::core::WhenFilter;

namespace {

Event sample() {
  Event e;
  e.status = 200;
  e.meta.test = true;
  e.meta.source = SystemRef{"source-1", "Redox Dev Tools"};
  e.meta.destinations = {SystemRef{"dest-1", "A"}, SystemRef{std::nullopt, "B"},
                         SystemRef{"dest-2", "C"}};
  e.output = {OutputFile{"Patient", "https://x/p", std::nullopt},
              OutputFile{"Encounter", "https://x/e", 3}};
  return e;
}

}  // namespace

TEST_SUITE("core/when") {
  TEST_CASE("an empty filter matches every event") {
    CHECK(matches(WhenFilter{}, sample()));
    CHECK(matches(WhenFilter{}, Event{}));
  }

  TEST_CASE("status: any of the listed") {
    WhenFilter w;
    w.status = {200};
    CHECK(matches(w, sample()));
    w.status = {202};
    CHECK_FALSE(matches(w, sample()));
    w.status = {202, 200};
    CHECK(matches(w, sample()));
  }

  TEST_CASE("test: equals Meta.Test absent or null counting as false") {
    WhenFilter w;
    w.test = true;
    CHECK(matches(w, sample()));
    w.test = false;
    CHECK_FALSE(matches(w, sample()));

    Event untested = sample();
    untested.meta.test.reset();
    CHECK(matches(w, untested));  // test: false
    w.test = true;
    CHECK_FALSE(matches(w, untested));
    untested.meta.test = false;
    CHECK_FALSE(matches(w, untested));
  }

  TEST_CASE("resource_types: any output type in the list") {
    WhenFilter w;
    w.resource_types = {"Observation", "Encounter"};
    CHECK(matches(w, sample()));
    w.resource_types = {"Observation"};
    CHECK_FALSE(matches(w, sample()));
    w.resource_types = {"patient"};  // exact, case-sensitive
    CHECK_FALSE(matches(w, sample()));
    Event in_progress = sample();
    in_progress.output.clear();
    w.resource_types = {"Patient"};
    CHECK_FALSE(matches(w, in_progress));
  }

  TEST_CASE("source_id: equals Meta.Source.ID") {
    WhenFilter w;
    w.source_id = "source-1";
    CHECK(matches(w, sample()));
    w.source_id = "source-2";
    CHECK_FALSE(matches(w, sample()));
    Event no_source = sample();
    no_source.meta.source.reset();
    CHECK_FALSE(matches(w, no_source));
    Event null_id = sample();
    null_id.meta.source->id.reset();
    w.source_id = "";
    CHECK_FALSE(matches(w, null_id));
  }

  TEST_CASE("destination_id: any Meta.Destinations.ID") {
    WhenFilter w;
    w.destination_id = "dest-2";
    CHECK(matches(w, sample()));
    w.destination_id = "dest-1";
    CHECK(matches(w, sample()));
    w.destination_id = "dest-3";
    CHECK_FALSE(matches(w, sample()));
    Event none = sample();
    none.meta.destinations.clear();
    w.destination_id = "dest-1";
    CHECK_FALSE(matches(w, none));
  }

  TEST_CASE("every set field must match") {
    WhenFilter w;
    w.status = {200};
    w.test = true;
    w.resource_types = {"Patient"};
    w.source_id = "source-1";
    w.destination_id = "dest-1";
    CHECK(matches(w, sample()));

    WhenFilter one_off = w;
    one_off.status = {202};
    CHECK_FALSE(matches(one_off, sample()));
    one_off = w;
    one_off.test = false;
    CHECK_FALSE(matches(one_off, sample()));
    one_off = w;
    one_off.resource_types = {"Observation"};
    CHECK_FALSE(matches(one_off, sample()));
    one_off = w;
    one_off.source_id = "other";
    CHECK_FALSE(matches(one_off, sample()));
    one_off = w;
    one_off.destination_id = "other";
    CHECK_FALSE(matches(one_off, sample()));
  }
}
