using System.Text.Json;
using LoraPS.Data;

namespace LoraPS.Evaluation;

/// <summary>A task's data file is missing: the bundled copy was removed or -DataRoot points elsewhere.</summary>
public sealed class TaskDataNotFoundException(string task, string path)
    : FileNotFoundException($"The data of task '{task}' was not found at '{path}'. Give the folder that holds LoraPS's data/ layout " +
        "(e.g. mmlu/test/<subject>_test.csv.gz) with -DataRoot, or restore the bundled data folder.", path)
{
    public string Task { get; } = task;
}

/// <summary>
/// Where the task data lives (the repository's <c>data/</c> folder by default) and readers for its files. Every reader
/// follows the bundled layout; a -DataRoot override must use the same relative paths.
/// </summary>
public sealed class TaskData
{
    public TaskData(string? root = null) => Root = Path.GetFullPath(string.IsNullOrEmpty(root) ? BundledRoot : root);

    public string Root { get; }

    /// <summary>The <c>data/</c> folder beside the engine assembly or above it (the repository or module layout).</summary>
    public static string BundledRoot
    {
        get
        {
            var here = Path.GetDirectoryName(typeof(TaskData).Assembly.Location) ?? AppContext.BaseDirectory;
            for (var dir = new DirectoryInfo(here); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "data");
                if (Directory.Exists(Path.Combine(candidate, "arithmetic"))) return candidate;
            }
            return Path.Combine(here, "data");
        }
    }

    /// <summary>The full path of a data file, which must exist.</summary>
    public string File(string task, params string[] parts)
    {
        var path = Path.Combine(new[] { Root }.Concat(parts).ToArray());
        if (!System.IO.File.Exists(path)) throw new TaskDataNotFoundException(task, path);
        return path;
    }

    internal static IEnumerable<DataRecord> Records(string path) => RecordReader.ReadFile(path);

    internal static string Text(DataRecord record, string field) =>
        record.Fields.TryGetValue(field, out var value) && value is not null
            ? value.ToString()!
            : throw new DatasetFormatException(record.Location, $"the record has no '{field}' property (it has {record.DescribeProperties()}).");

    /// <summary>A JSON (or .json.gz) document.</summary>
    internal static JsonDocument Json(string path)
    {
        using var stream = RecordReader.OpenBinary(path);
        return JsonDocument.Parse(stream);
    }

    /// <summary>Tab-separated lines as they are (GLUE's files have bare quotes), optionally skipping a header.</summary>
    internal static IEnumerable<string[]> TabLines(string path, bool header)
    {
        using var reader = RecordReader.OpenText(path);
        bool first = true;
        while (reader.ReadLine() is string line)
        {
            if (first && header) { first = false; continue; }
            first = false;
            if (line.Length > 0) yield return line.Split('\t');
        }
    }

    /// <summary>A CSV file without a header row (MMLU's), read with the dataset reader's RFC 4180 parser.</summary>
    internal static IEnumerable<DataRecord> HeaderlessCsv(string path, params string[] columns)
    {
        var header = string.Join(',', columns) + "\n";
        return DelimitedRecordReader.Read(() => new PrefixedReader(header, RecordReader.OpenText(path)), path, ',', QuoteMode.Rfc4180);
    }

    sealed class PrefixedReader(string prefix, TextReader rest) : TextReader
    {
        int position;
        public override int Peek() => position < prefix.Length ? prefix[position] : rest.Peek();
        public override int Read() => position < prefix.Length ? prefix[position++] : rest.Read();
        protected override void Dispose(bool disposing)
        {
            if (disposing) rest.Dispose();
            base.Dispose(disposing);
        }
    }
}
