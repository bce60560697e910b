// NSGA-II (Deb et al. 2002) over discrete genes, both objectives minimized: what Shears' sub-adapter
// search runs over per-group ranks (ALGORITHMS.md §3; LoNAS/Shears search their elastic super-
// networks with it). A gene is an index into its own list of choices. Evaluations are cached by
// configuration, so a child that repeats a parent costs nothing: on a small space the search
// revisits configurations often, and each evaluation is a merge and a held-out pass.
import { Rng } from '../rng.js';

/** One evaluated configuration: its genes and its objectives (all minimized). */
export interface Evaluated {
  genes: readonly number[];
  objectives: readonly number[];
}

export interface Nsga2Options {
  /** How many choices each gene has (gene i takes values 0 … choices[i] − 1). */
  choices: readonly number[];
  /** Configurations the first population starts from (deduplicated); random ones fill it up. */
  initial: readonly (readonly number[])[];
  population: number;
  generations: number;
  seed: number;
  /** Called once per distinct configuration, in a deterministic order. */
  evaluate: (genes: readonly number[]) => Promise<readonly number[]>;
  /** Called after each generation (0 = the initial population) with the evaluations so far. */
  onGeneration?: (generation: number, evaluations: number) => void;
}

export interface Nsga2Result {
  /** Every configuration evaluated, in evaluation order. */
  evaluated: Evaluated[];
  /** The last population. */
  population: Evaluated[];
  /**
   * The non-dominated configurations among everything evaluated (the archive's front, which
   * contains or dominates every member of the last population's first front): crowding may
   * drop a front member from a full population, and the choice must not lose it.
   */
  front: Evaluated[];
}

export const genesKey = (genes: readonly number[]): string => genes.join(',');

/** a dominates b: no worse in every objective and better in one (minimizing). */
export function dominates(a: readonly number[], b: readonly number[]): boolean {
  let better = false;
  for (let i = 0; i < a.length; i++) {
    if ((a[i] as number) > (b[i] as number)) return false;
    if ((a[i] as number) < (b[i] as number)) better = true;
  }
  return better;
}

/**
 * Fast non-dominated sort: the fronts as indices into `points`, best first, each in ascending index
 * order. Equal points fall in the same front (neither dominates the other).
 */
export function nonDominatedSort(points: readonly (readonly number[])[]): number[][] {
  const dominated: number[][] = points.map(() => []);
  const count = points.map(() => 0);
  for (let p = 0; p < points.length; p++) {
    for (let q = 0; q < points.length; q++) {
      if (p === q) continue;
      if (dominates(points[p] as number[], points[q] as number[])) (dominated[p] as number[]).push(q);
      else if (dominates(points[q] as number[], points[p] as number[])) count[p] = (count[p] as number) + 1;
    }
  }
  const fronts: number[][] = [];
  let current = points.map((_, i) => i).filter((i) => count[i] === 0);
  while (current.length > 0) {
    fronts.push(current);
    const next: number[] = [];
    for (const p of current) {
      for (const q of dominated[p] as number[]) {
        count[q] = (count[q] as number) - 1;
        if (count[q] === 0) next.push(q);
      }
    }
    current = next.sort((a, b) => a - b);
  }
  return fronts;
}

/**
 * Crowding distance of each member of one front (aligned with `front`): per objective, the
 * extremes get Infinity so the ends of the front always survive, and an interior point adds the gap
 * between its neighbours over the objective's range (an objective with no range adds nothing).
 */
export function crowdingDistance(points: readonly (readonly number[])[], front: readonly number[]): number[] {
  const distance = front.map(() => 0);
  if (front.length === 0) return distance;
  const objectives = (points[front[0] as number] as number[]).length;
  for (let m = 0; m < objectives; m++) {
    const value = (k: number): number => (points[front[k] as number] as number[])[m] as number;
    // Ties broken by position so the order, and so which tied point is an extreme, is deterministic.
    const order = front.map((_, k) => k).sort((a, b) => value(a) - value(b) || a - b);
    const lo = value(order[0] as number);
    const hi = value(order[order.length - 1] as number);
    distance[order[0] as number] = Infinity;
    distance[order[order.length - 1] as number] = Infinity;
    if (!(hi > lo)) continue;
    for (let j = 1; j < order.length - 1; j++) {
      const k = order[j] as number;
      distance[k] = (distance[k] as number) + (value(order[j + 1] as number) - value(order[j - 1] as number)) / (hi - lo);
    }
  }
  return distance;
}

/** Each member's front (0 = best) and crowding distance: the order the tournament and survival use. */
function rankAndCrowd(members: readonly Evaluated[]): { rank: number[]; crowd: number[]; fronts: number[][] } {
  const points = members.map((e) => e.objectives);
  const fronts = nonDominatedSort(points);
  const rank = members.map(() => 0);
  const crowd = members.map(() => 0);
  fronts.forEach((front, f) => {
    const d = crowdingDistance(points, front);
    front.forEach((i, k) => {
      rank[i] = f;
      crowd[i] = d[k] as number;
    });
  });
  return { rank, crowd, fronts };
}

export async function nsga2(opts: Nsga2Options): Promise<Nsga2Result> {
  const { choices, population: size, generations } = opts;
  if (!(Number.isInteger(size) && size >= 2)) throw new Error(`search population ${size} must be an integer of at least 2`);
  if (!(Number.isInteger(generations) && generations >= 0)) throw new Error(`search generations ${generations} must be a non-negative integer`);
  for (const g of opts.initial) {
    if (g.length !== choices.length || g.some((x, i) => !(Number.isInteger(x) && x >= 0 && x < (choices[i] as number)))) throw new Error(`initial configuration [${g.join(', ')}] does not fit genes with [${choices.join(', ')}] choices`);
  }
  const rng = new Rng(opts.seed >>> 0);
  const cache = new Map<string, Evaluated>();
  const evaluated: Evaluated[] = [];
  const evaluate = async (genes: readonly number[]): Promise<Evaluated> => {
    const key = genesKey(genes);
    let e = cache.get(key);
    if (!e) {
      e = { genes: [...genes], objectives: [...(await opts.evaluate(genes))] };
      cache.set(key, e);
      evaluated.push(e);
    }
    return e;
  };
  const space = choices.reduce((n, c) => n * c, 1);
  const random = (): number[] => choices.map((c) => rng.int(c));

  // The first population: the given configurations, then distinct random ones (as many as the space holds).
  const seen = new Set<string>();
  const first: number[][] = [];
  for (const g of opts.initial) {
    if (first.length < size && !seen.has(genesKey(g))) {
      seen.add(genesKey(g));
      first.push([...g]);
    }
  }
  for (let tries = 0; first.length < Math.min(size, space) && tries < 100 * size; tries++) {
    const g = random();
    if (!seen.has(genesKey(g))) {
      seen.add(genesKey(g));
      first.push(g);
    }
  }
  let population: Evaluated[] = [];
  for (const g of first) population.push(await evaluate(g));
  opts.onGeneration?.(0, evaluated.length);

  // Mutation at 1/genes: on average one gene changes per child, as NSGA-II's usual p_m = 1/n.
  const mutation = 1 / Math.max(1, choices.length);
  for (let gen = 1; gen <= generations; gen++) {
    const { rank, crowd } = rankAndCrowd(population);
    const tournament = (): Evaluated => {
      const a = rng.int(population.length);
      const b = rng.int(population.length);
      const [ra, rb, ca, cb] = [rank[a] as number, rank[b] as number, crowd[a] as number, crowd[b] as number];
      // The better front wins, then the less crowded member, then the earlier one.
      const winner = ra !== rb ? (ra < rb ? a : b) : ca !== cb ? (ca > cb ? a : b) : Math.min(a, b);
      return population[winner] as Evaluated;
    };
    const children: number[][] = [];
    while (children.length < size) {
      const [p, q] = [tournament().genes, tournament().genes];
      // Uniform crossover: each gene from either parent; the second child takes the other parent's.
      const c1: number[] = [];
      const c2: number[] = [];
      for (let i = 0; i < choices.length; i++) {
        const swap = rng.next() < 0.5;
        c1.push((swap ? q : p)[i] as number);
        c2.push((swap ? p : q)[i] as number);
      }
      for (const c of [c1, c2]) {
        for (let i = 0; i < c.length; i++) {
          const n = choices[i] as number;
          // A mutated gene takes another of its choices, never its own.
          if (n > 1 && rng.next() < mutation) c[i] = ((c[i] as number) + 1 + rng.int(n - 1)) % n;
        }
        if (children.length < size) children.push(c);
      }
    }
    const offspring: Evaluated[] = [];
    for (const c of children) offspring.push(await evaluate(c));
    // Survival from parents and children together (elitism), each configuration once: copies would
    // crowd a front with one point.
    const union = new Map<string, Evaluated>();
    for (const e of [...population, ...offspring]) union.set(genesKey(e.genes), e);
    const members = [...union.values()];
    const survival = rankAndCrowd(members);
    const next: Evaluated[] = [];
    for (const front of survival.fronts) {
      if (next.length + front.length <= size) {
        for (const i of front) next.push(members[i] as Evaluated);
        continue;
      }
      const byCrowding = [...front].sort((a, b) => (survival.crowd[b] as number) - (survival.crowd[a] as number) || a - b);
      for (const i of byCrowding.slice(0, size - next.length)) next.push(members[i] as Evaluated);
      break;
    }
    population = next;
    opts.onGeneration?.(gen, evaluated.length);
  }
  const archive = nonDominatedSort(evaluated.map((e) => e.objectives));
  return { evaluated, population, front: (archive[0] ?? []).map((i) => evaluated[i] as Evaluated) };
}
