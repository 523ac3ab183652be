using System.Text.Json;
using System.Text.RegularExpressions;
using LoraPS.Data;

namespace LoraPS.Evaluation;

/// <summary>A task name (or wildcard) matches no task; <see cref="CloseMatches"/> lists what the user may have meant.</summary>
public sealed class UnknownTaskException(string name, IReadOnlyList<string> closeMatches)
    : ArgumentException($"There is no task '{name}'." + (closeMatches.Count > 0 ? $" Did you mean {string.Join(", ", closeMatches)}?" : "") +
        " Wildcards work too (blimp_*, mmlu_*, arithmetic_2d*); Invoke-LoraEval -ListTask lists them all.")
{
    public string Name { get; } = name;
    public IReadOnlyList<string> CloseMatches { get; } = closeMatches;
}

/// <summary>Built-in tasks by name, with PowerShell-style wildcards, and tasks defined by a file.</summary>
public static class EvalTaskRegistry
{
    /// <summary>Every built-in task name.</summary>
    public static IReadOnlyList<string> Names { get; } = BuiltinTasks.Names.ToList();

    /// <summary>The task names matching <paramref name="patterns"/> (names or <c>*</c>/<c>?</c> wildcards,
    /// case-insensitive), in the order given, each once.</summary>
    /// <exception cref="UnknownTaskException">A pattern matches nothing.</exception>
    public static IReadOnlyList<string> Resolve(IEnumerable<string> patterns)
    {
        var result = new List<string>();
        foreach (var pattern in patterns)
        {
            var regex = new Regex("^" + Regex.Escape(pattern.Trim()).Replace(@"\*", ".*").Replace(@"\?", ".") + "$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
            var matches = Names.Where(n => regex.IsMatch(n)).ToList();
            if (matches.Count == 0) throw new UnknownTaskException(pattern, CloseMatches(pattern));
            result.AddRange(matches.Where(m => !result.Contains(m)));
        }
        return result;
    }

    /// <summary>Up to five names nearest to <paramref name="name"/> by edit distance, or containing it.</summary>
    public static IReadOnlyList<string> CloseMatches(string name)
    {
        var plain = name.Replace("*", "").Replace("?", "").ToLowerInvariant();
        if (plain.Length == 0) return Array.Empty<string>();
        int limit = Math.Max(2, plain.Length / 3);
        return Names.Select(n => (Name: n, Distance: n.Contains(plain, StringComparison.OrdinalIgnoreCase) ? 0 : EditDistance(plain, n.ToLowerInvariant())))
            .Where(x => x.Distance <= limit).OrderBy(x => x.Distance).ThenBy(x => x.Name, StringComparer.Ordinal).Take(5).Select(x => x.Name).ToList();
    }

    static int EditDistance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }

    /// <summary>The built-in task <paramref name="name"/> reading its data under <paramref name="dataRoot"/> (default: the bundled data/).</summary>
    public static EvalTask Create(string name, string? dataRoot = null) =>
        BuiltinTasks.Create(name, new TaskData(dataRoot)) ?? throw new UnknownTaskException(name, CloseMatches(name));

    /// <summary>
    /// A task defined by a file, named after it (<c>my_task.jsonl</c> → <c>my_task</c>). A <c>.txt</c> file is one
    /// document for <c>perplexity</c>. A JSON Lines file (optionally .gz) holds one document per line and its first
    /// record decides the kind:
    /// <list type="bullet">
    /// <item><c>{"context": "...", "choices": ["...", "..."], "gold": 0}</c> — multiple choice (<c>acc</c>, <c>acc_norm</c>); choices are scored as " " + choice;</item>
    /// <item><c>{"context": "...", "continuation": "..."}</c> — log-likelihood (<c>acc</c> = greedy match, <c>perplexity</c>); nothing is put between them;</item>
    /// <item><c>{"text": "..."}</c> — rolling log-likelihood (<c>word_perplexity</c>, <c>byte_perplexity</c>, <c>bits_per_byte</c>).</item>
    /// </list>
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetFormatException">A record does not follow the schema.</exception>
    public static EvalTask FromFile(string path, string? name = null)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FileNotFoundException($"The task file '{full}' does not exist.", full);
        var fileName = Path.GetFileName(full);
        int dot = fileName.IndexOf('.');
        name ??= dot > 0 ? fileName[..dot] : fileName;
        var lower = fileName.ToLowerInvariant();
        if (lower.EndsWith(".txt") || lower.EndsWith(".txt.gz"))
            return new PerplexityTask(name, () => { using var reader = RecordReader.OpenText(full); return new[] { reader.ReadToEnd() }; }, full);

        var records = TaskData.Records(full).ToList();
        var first = records[0];
        if (first.Fields.ContainsKey("choices"))
            return new MultipleChoiceTask(name, 1.0, _ => records.Select(ChoiceDoc).ToList(), MultipleChoiceMetrics.AccuracyAndNormalized,
                extraConfig: new Dictionary<string, object?> { ["dataset_path"] = full });
        if (first.Fields.ContainsKey("continuation"))
            return new LoglikelihoodTask(name, 1.0, () => records.Select(r => new LoglikelihoodRequest(ContextOf(r), TaskData.Text(r, "continuation"))).ToList(),
                reportPerplexity: true, extraConfig: new Dictionary<string, object?> { ["dataset_path"] = full });
        if (first.Fields.ContainsKey("text"))
            return new PerplexityTask(name, () => records.Select(r => TaskData.Text(r, "text")).ToList(), full);
        throw new DatasetFormatException(first.Location,
            $"a task file's records need 'choices' (with 'context' and 'gold'), 'continuation' (with 'context') or 'text'; this one has {first.DescribeProperties()}.");
    }

    static string ContextOf(DataRecord r) => r.Fields.TryGetValue("context", out var c) && c is not null ? c.ToString()! : "";

    static MultipleChoiceDoc ChoiceDoc(DataRecord r)
    {
        if (r.Fields["choices"] is not JsonElement { ValueKind: JsonValueKind.Array } array || array.GetArrayLength() < 2
            || array.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw new DatasetFormatException(r.Location, "'choices' must be an array of at least two strings.");
        var choices = array.EnumerateArray().Select(e => e.GetString()!).ToList();
        if (!r.Fields.TryGetValue("gold", out var g) || g is not long gold || gold < 0 || gold >= choices.Count)
            throw new DatasetFormatException(r.Location, $"'gold' must be the 0-based index of the right choice (0 to {choices.Count - 1}).");
        return new MultipleChoiceDoc(ContextOf(r), choices, (int)gold);
    }
}
