// What each status is called on its badge, and how the badge looks (the original's classes).
import type { TaskStatus } from "./api";

export const BADGES: Record<TaskStatus, string> = {
  pending: "PENDING", planning: "PLANNING", waiting_questions: "NEEDS INPUT", waiting_plan_review: "REVIEW PLAN",
  ready_to_implement: "READY", implementing: "IMPLEMENTING", under_review: "REVIEW", completed: "DONE",
  failed: "FAILED", cancelled: "CANCELLED",
};

const WARNING = "border-term-warning text-term-warning";
const WORKING = "border-term-info text-term-info animate-pulse";
export const BADGE_CLASS: Partial<Record<TaskStatus, string>> = {
  pending: WARNING, waiting_questions: WARNING, waiting_plan_review: "border-term-accent text-term-accent",
  ready_to_implement: "border-term-accent text-term-accent", planning: WORKING, implementing: WORKING,
  under_review: "border-term-info text-term-info", completed: "border-term-success text-term-success",
  failed: "border-term-error text-term-error", cancelled: "border-term-muted text-term-muted",
};
