using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Management.Automation.Runspaces;
using System.Reflection;

namespace LoraPS.Runner.Hosting;

/// <summary>
/// A PowerShell session with LoraPS imported, printing like pwsh: every command's output and errors go through
/// Out-Default to the <see cref="RunnerHost"/>, terminating errors are shown with the same error view, and the
/// exit code says whether anything failed. One command runs at a time; <see cref="Stop"/> may be called from
/// any thread (Ctrl+C) and stops it the way pwsh does, through each cmdlet's StopProcessing.
/// </summary>
public sealed class LoraSession : IDisposable
{
    /// <summary>Exit code after Ctrl+C / SIGTERM stopped the pipeline (128 + SIGINT, as shells report it).</summary>
    public const int StoppedExitCode = 130;

    readonly Runspace _runspace;
    readonly RunnerHost _host;
    readonly object _gate = new();
    PowerShell? _running;
    bool _stopRequested;

    /// <summary>Names of the compatibility functions defined because the real command was missing.</summary>
    public IReadOnlyList<string> CompatFunctions { get; }

    LoraSession(Runspace runspace, RunnerHost host, IReadOnlyList<string> compat)
    {
        _runspace = runspace;
        _host = host;
        CompatFunctions = compat;
    }

    public RunnerHost Host => _host;
    public Runspace Runspace => _runspace;

    /// <summary>
    /// Opens a runspace on <paramref name="host"/>, imports the module manifest at <paramref name="modulePath"/>
    /// and defines the compatibility functions for commands this SDK-hosted PowerShell lacks.
    /// </summary>
    /// <exception cref="InvalidOperationException">The module could not be imported; the message says why.</exception>
    public static LoraSession Open(RunnerHost host, string modulePath)
    {
        // Plain text unless output is a colour terminal: PowerShell adds ANSI to table headers otherwise.
        PSStyle.Instance.OutputRendering = host.RunnerUI.SupportsVirtualTerminal ? OutputRendering.Ansi : OutputRendering.PlainText;
        var iss = InitialSessionState.CreateDefault2();
        // Windows applies execution policy to script files; a runner exists to run them (Unix has no policy).
        if (OperatingSystem.IsWindows()) iss.ExecutionPolicy = Microsoft.PowerShell.ExecutionPolicy.Bypass;
        var compat = AddCompatFunctions(iss);
        var runspace = RunspaceFactory.CreateRunspace(host, iss);
        runspace.Open();
        try
        {
            using (var ps = PowerShell.Create(runspace))
            {
                ps.AddCommand("Import-Module").AddParameter("Name", modulePath).AddParameter("ErrorAction", ActionPreference.Stop);
                try { ps.Invoke(); }
                catch (RuntimeException e)
                {
                    throw new InvalidOperationException($"Cannot import the LoraPS module from {modulePath}: {e.Message}", e);
                }
            }
            return new LoraSession(runspace, host, compat);
        }
        catch
        {
            runspace.Dispose();
            throw;
        }
    }

    /// <summary>Runs command text, as <c>pwsh -Command</c>. Returns the process exit code.</summary>
    public int RunCommand(string text) =>
        Run(ps => ps.AddScript(text), isScriptFile: false);

    /// <summary>
    /// Runs a script file with arguments given as on a command line, as <c>pwsh -File</c>: "-Name value" binds a
    /// named parameter, "-Switch" a switch, "-Switch:$false" turns one off, anything else is positional (or $args).
    /// </summary>
    public int RunScriptFile(string path, IReadOnlyList<string> arguments)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            _host.RunnerUI.WriteErrorLine($"The script '{path}' does not exist. Give the path of a .ps1 file.");
            return 1;
        }
        return Run(ps => ps.AddScript(ScriptInvocation(full, arguments)), isScriptFile: true);
    }

    /// <summary>
    /// Builds "&amp; 'script.ps1' -Name 'value' 'positional'": parameter names stay bare so PowerShell's own binder
    /// pairs them with values exactly as for a call typed in a script; every value is a single-quoted literal.
    /// </summary>
    public static string ScriptInvocation(string scriptPath, IReadOnlyList<string> arguments)
    {
        var parts = new List<string> { "&", Quote(scriptPath) };
        foreach (var arg in arguments)
        {
            var m = System.Text.RegularExpressions.Regex.Match(arg, @"^-([\p{L}_][\p{L}\p{Nd}_]*)(:(.*))?$", System.Text.RegularExpressions.RegexOptions.Singleline);
            if (!m.Success) { parts.Add(Quote(arg)); continue; }
            if (!m.Groups[2].Success) { parts.Add("-" + m.Groups[1].Value); continue; }
            string value = m.Groups[3].Value;
            // pwsh -File understands -Switch:$true / -Switch:$false literally.
            parts.Add($"-{m.Groups[1].Value}:" + (value is "$true" or "$false" ? value : Quote(value)));
        }
        return string.Join(" ", parts);
    }

    static string Quote(string s) => "'" + s.Replace("'", "''") + "'";

    /// <summary>Stops the running command (from any thread). Returns false if nothing was running.</summary>
    public bool Stop()
    {
        lock (_gate)
        {
            if (_running is null) return false;
            _stopRequested = true;
            _running.BeginStop(null, null);
            return true;
        }
    }

    int Run(Action<PowerShell> addCommand, bool isScriptFile)
    {
        int errorsBefore = _host.RunnerUI.ErrorLines;
        bool terminated = false;
        using var ps = PowerShell.Create(_runspace);
        if (isScriptFile) _runspace.SessionStateProxy.SetVariable("global:LASTEXITCODE", 0);
        addCommand(ps);
        // Errors join the output so Out-Default shows them in order, on stderr, with pwsh's error view.
        ps.Commands.Commands[0].MergeMyResults(PipelineResultTypes.Error, PipelineResultTypes.Output);
        ps.AddCommand("Out-Default");
        lock (_gate) { _running = ps; _stopRequested = false; }
        try
        {
            ps.Invoke();
        }
        catch (RuntimeException e) when (e is not PipelineStoppedException)
        {
            terminated = true;
            ShowError(e.ErrorRecord);
        }
        catch (PipelineStoppedException) { }
        finally
        {
            lock (_gate) _running = null;
            _host.RunnerUI.ResetProgress();
        }
        // Errors that did not come through the merged stream (e.g. from Out-Default itself).
        foreach (var error in ps.Streams.Error) ShowError(error);

        if (_stopRequested || ps.InvocationStateInfo.State == PSInvocationState.Stopped) return StoppedExitCode;
        if (_host.ExitCode is { } exit) return exit;
        if (isScriptFile && _runspace.SessionStateProxy.GetVariable("LASTEXITCODE") is int last && last != 0) return last;
        return terminated || _host.RunnerUI.ErrorLines > errorsBefore ? 1 : 0;
    }

    static readonly PropertyInfo? WriteStreamProperty =
        typeof(PSObject).GetProperty("WriteStream", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);

    /// <summary>
    /// Shows an error record the way pwsh does (its $ErrorView, on stderr). Out-Default sends an object to the
    /// host's error line only when the object is tagged as coming from the error stream; that tag
    /// (PSObject.WriteStream) is internal, so it is set by reflection, with a plain rendering as fallback.
    /// </summary>
    void ShowError(ErrorRecord error)
    {
        var wrapped = new PSObject(error);
        try
        {
            if (WriteStreamProperty?.SetMethod is { } setter)
            {
                setter.Invoke(wrapped, new[] { Enum.Parse(WriteStreamProperty.PropertyType, "Error") });
                using var ps = PowerShell.Create(_runspace);
                ps.AddCommand("Out-Default");
                ps.Invoke(new[] { wrapped });
                if (ps.Streams.Error.Count == 0) return;
            }
        }
        catch (Exception e) when (e is RuntimeException or TargetInvocationException or ArgumentException) { }
        string position = error.InvocationInfo?.PositionMessage is { Length: > 0 } p ? Environment.NewLine + p : "";
        _host.RunnerUI.WriteErrorLine(error + position);
    }

    /// <summary>The modules whose commands RunnerCompat.ps1 stands in for.</summary>
    static readonly string[] ReplacedModules = { "Microsoft.PowerShell.Utility", "Microsoft.PowerShell.Management" };

    /// <summary>
    /// Adds the functions of RunnerCompat.ps1 to the session, each only where the real command is absent: not a
    /// command of the session, and neither module that provides it installed on $env:PSModulePath (from where
    /// PowerShell would auto-load it). Checking the folders is instant; asking Get-Command for 30 names costs seconds.
    /// </summary>
    static IReadOnlyList<string> AddCompatFunctions(InitialSessionState iss)
    {
        using var stream = typeof(LoraSession).Assembly.GetManifestResourceStream("RunnerCompat.ps1")
                           ?? throw new InvalidOperationException("The runner was built without its RunnerCompat.ps1 resource.");
        string script = new StreamReader(stream).ReadToEnd();
        var ast = Parser.ParseInput(script, "RunnerCompat.ps1", out _, out var errors);
        if (errors.Length > 0) throw new InvalidOperationException($"RunnerCompat.ps1: {errors[0].Message} at line {errors[0].Extent.StartLineNumber}.");

        var modulePaths = (Environment.GetEnvironmentVariable("PSModulePath") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        if (modulePaths.Any(p => ReplacedModules.Any(m => Directory.Exists(Path.Combine(p, m)))))
            return Array.Empty<string>(); // a real PowerShell installation is reachable: use it, define nothing

        var defined = new List<string>();
        foreach (var function in ast.EndBlock.Statements.OfType<FunctionDefinitionAst>())
        {
            if (iss.Commands[function.Name].Count > 0) continue;
            string body = function.Body.Extent.Text;
            iss.Commands.Add(new SessionStateFunctionEntry(function.Name, body[1..^1])); // the text inside { }
            defined.Add(function.Name);
        }
        return defined;
    }

    public void Dispose() => _runspace.Dispose();
}
